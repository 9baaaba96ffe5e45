"""Math answers: finding the final answer, and equivalence beyond what plain math-verify does."""

import time

import pytest

from sky_distill.verify.checks import check_response, gold_problem
from sky_distill.verify.math import equivalent, extract_answer, is_correct, is_text_answer, parses

BOXED_AND_STATED = [
    ("so \\boxed{12} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("<think>maybe \\boxed{3}</think> The answer is \\boxed{4}.", "4"),
    (
        "<|begin_of_thought|>\\boxed{9}<|end_of_thought|><|begin_of_solution|>So \\boxed{10}<|end_of_solution|>",
        "10",
    ),
    ("The final answer is $42$.", "42"),
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
    ("no answer here", None),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("thus \\boxed 5.", "5"),
    ("<think>the answer is \\boxed{7}</think>I could not finish.", "7"),  # boxed in the thinking only
    ("We compute.\n\nTherefore, the polygon has 15 sides.\n\nI think that's the correct answer.", "15"),
    ("So the answer is \\(x = 3\\).", "x = 3"),
]

CLOSING_SENTENCES = [
    ("Thus, the volume of $0.25 \\mathrm{M}$ NaI required is 36 milliliters.", "36"),
    (
        "So $d = 100$ pc.\nTherefore, the star is 100 parsecs away.\n\n### Explanation\nParallax is a shift.\n\nWe used it.",
        "100",
    ),
    ("*f(1/5)* = (9/5) / (1/5)\n*f(1/5)* = 9\n\n**Therefore, the value of f(1/5) is:**", "9"),
    ("Profit: $93 - $15 = $78.\n\nEverything adds up. I think that is right.", "78"),
    (
        "Perhaps the answer is an integer n below 9.\n\nWe check.\n\nIt agrees.\n\nTherefore, the value of n is 3.",
        "3",
    ),
    ("So \\boxed{5}.\n\nThe final answer is clearly highlighted.", "5"),
    ("The answer is **5**.", "5"),
]


@pytest.mark.parametrize("response,expected", BOXED_AND_STATED + CLOSING_SENTENCES)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


PLAIN_CASES = [
    ("0.5", "\\frac{1}{2}", True),
    ("936", "936", True),
    ("937", "936", False),
    ("\\sqrt{4}", "2", True),
    ("x", "2", False),
    # units and currency
    ("5 \\text{ cm}", "5", True),
    ("\\$36", "36", True),
    ("1.07 \\times 10^{16} \\text{ photons}", "1.07e16", True),
    ("3.0\\times 10^{8}\\ \\mathrm{m/s}", "3\\times10^8", True),
    # percentages: 28% is 28 (math-verify) and also 0.28; 28 is not 0.28
    ("28\\%", "28", True),
    ("0.28", "28\\%", True),
    ("28", "0.28", False),
    ("0.3", "28\\%", False),
    # scientific notation is compared relatively, not rounded to 6 decimals
    ("2.89 \\times 10^{-19}", "2.88e-19", False),
    ("2.88 \\times 10^{-19}", "2.88e-19", True),
    # digit groups
    ("1 000", "1000", True),
    ("7,425,000", "7425000", True),
    # intervals and sets
    ("(1, 3]", "(1,3]", True),
    ("[1, 3)", "(1,3]", False),
    ("\\{2, 1\\}", "\\{1,2\\}", True),
    ("x \\in [-2,7]", "-2 \\le x \\le 7", True),
    ("(-6, 6) \\text{ and } (2, 6)", "(-6,6)$, $(2,6)", True),
    ("21, 36, and 82", "19, 46, and 82", False),
    # equations
    ("x = 3", "3", True),
    ("3", "x=3", True),
    ("y = 2x+3", "2x + 3", True),
    ("\\frac{d M}{d t} = 2 M", "\\frac{dM}{dt}=2M", True),
    # text answers: compared as words, never as products of letters
    ("\\text{Monday}", "Monday", True),
    ("Dynamo", "\\text{Monday}", False),
    ("\\text{(B)}", "B", True),
    ("The Evelyn", "\\text{Evelyn}", True),
    ("no solution", "\\text{No solution}", True),
    # numpy-style gold, \mathrm{e}
    ("\\arcsin\\left(\\frac{1}{1.3}\\right)", "np.arcsin(10/13)", True),
    ("1 + \\frac{1}{\\mathrm{e}}", "1 - \\frac{1}{\\mathrm{e}}", False),
]

GENERAL_RULES = [
    # assignments and conditions
    ("p = 4, q = 7", "(4, 7)", True),
    ("p = 7, q = 4", "(4, 7)", False),
    ("g(x) = 3x - 1", "3x-1", True),
    ("s = 3x - 1", "g(x) = 3x - 1", True),
    ("e^{-t} \\text{ for } t \\ge 0", "e^{-t}", True),
    ("\\frac{1}{3} \\text{ with probability } \\frac{1}{2}", "\\frac13", True),
    ("e^{-2t} \\text{ for } t \\ge 0", "e^{-t}", False),
    # notation of one quantity
    ("\\frac{a0}{2}", "\\frac{a_0}{2}", True),
    ("\\dot{y} = -3y", "\\frac{dy}{dt} = -3 y", True),
    ("y' = 3y", "\\frac{dy}{dt} = -3 y", False),
    ("2y - 4x = 6", "y = 2x + 3", True),
    ("2y - 4x = 8", "y = 2x + 3", False),
    # times, mixed numbers, units, percent
    ("7:45 \\text{ p.m.}", "19:45", True),
    ("7:45 \\text{ a.m.}", "19:45", False),
    ("3 1/4", "\\frac{13}{4}", True),
    ("3 1/4", "\\frac{11}{4}", False),
    ("12 seconds", "12", True),
    ("\\frac{3}{8}", "37.5\\%", True),
    ("\\frac{3}{7}", "37.5\\%", False),
    ("19.19\\%", "0.192", True),  # a percent against a ratio, at the gold's stated digits
    ("19.3\\%", "0.192", False),
    ("0.193", "19.2\\%", False),
    ("3.2 x 10^5", "3.2e5", True),
    # identities
    ("\\cos^2 t - \\sin^2 t", "\\cos(2t)", True),
    ("(1+i)(1-2i)", "3 - i", True),
    ("(1+i)(1+2i)", "3 - i", False),
    ("\\langle 1, -2, 5 \\rangle", "\\begin{pmatrix} 1 \\\\ -2 \\\\ 5 \\end{pmatrix}", True),
    ("3\\mathbf{i} - \\mathbf{j}", "\\begin{pmatrix} 3 \\\\ -1 \\end{pmatrix}", True),
    ("(1, 2, 5)", "\\begin{pmatrix} 1 \\\\ -2 \\\\ 5 \\end{pmatrix}", False),
    # multi-part answers
    ("x = 2 \\text{ or } x = -3", "-3, 2", True),
    ("2", "-3$,$2", False),
    ("1, 2, 4", "1,2,3", False),  # a list is never read as the number 1.2
    ("x = 1, x = \\frac{3 \\pm \\sqrt{5}}{2}", "1, \\frac{3+\\sqrt{5}}{2}, \\frac{3-\\sqrt{5}}{2}", True),
    ("x = \\frac{3 \\pm \\sqrt{5}}{2}", "1, \\frac{3+\\sqrt{5}}{2}, \\frac{3-\\sqrt{5}}{2}", False),
    ("\\pm 2", "2", False),
    ("E_1 \\text{ or } E_2", "E_{1},E_{2}", True),
    ("E_1 \\text{ or } E_3", "E_{1},E_{2}", False),
    ("f(x) = ax \\text{ where } a = 1", "f(x) = ax \\text{ where } a = 0", False),  # conditions differ
    ("x = 2 \\text{ (since } x > 1)", "2", True),
    # a named value with a step function is compared by math-verify, not at random points
    ("\\left\\lfloor \\frac{n}{3} \\right\\rfloor + 1", "N(n) = \\lfloor \\frac{n}{3} \\rfloor + 1", True),
    ("\\lfloor \\frac{n}{3} \\rfloor", "N(n) = \\lfloor \\frac{n}{3} \\rfloor + 1", False),
    # precision follows the gold's stated digits
    ("3.15 \\times 10^{-5}", "3.14\\times10^{-5}", False),
    ("3.15 \\times 10^{-5} \\text{ m}", "3.14e-5", False),
    ("3.1412 \\times 10^{-5}", "3.14e-5", True),
    ("6.02", "6.0", True),
    ("6.1", "6.0", False),
    ("6.0", "6.02", False),  # less precise than asked
    ("2.5e3", "2500", True),
    ("2501", "2500", False),
    # a trailing one-letter variable is not a unit (math-verify drops `t`, `h`, `m`, ... at the end)
    ("\\frac{1}{m}", "\\frac{1}{m} t", False),
    ("\\frac{t}{m}", "\\frac{1}{m} t", True),
    ("2 \\pi r", "2 \\pi r h", False),
    ("1.6 \\times 10^{3} m", "1600", True),  # a number with a unit keeps its unit removed
    # parses that are garbage are never equal
    ("\\hbar \\omega(v+2 / 2)", "\\hbar \\omega(v+1 / 2)", False),
    ("n - \\lfloor n / 3\\rfloor", "n - \\lfloor n / 2\\rfloor", False),
]

UNITS_PRECISION_AND_IDENTITIES = [
    # each list part with its own condition keeps its part
    (
        "E_1 \\text{ with probability } \\frac{1}{3}, \\text{ and } E_2 \\text{ with probability } \\frac{2}{3}",
        "E_{1},E_{2}",
        True,
    ),
    (
        "E_1 \\text{ with probability } \\frac{1}{3}, \\text{ and } E_3 \\text{ with probability } \\frac{2}{3}",
        "E_{1},E_{2}",
        False,
    ),
    # a range is not one of its ends
    ("\\text{Between 25 cents and 75 cents}", "75", False),
    ("\\text{from } 2 \\text{ to } 5", "5", False),
    # a number with a unit or a qualifier: the numbers decide unless both name different units
    ("1.6 \\, \\mathrm{K}", "1.6", True),
    ("1.6 nm", "1.6", True),
    ("3.2 M_\\odot", "3.2", True),
    ("\\text{about } 1.6", "1.6", True),
    ("1.7 \\, \\mathrm{K}", "1.6", False),
    ("1.6 nm", "1.6 m", False),
    ("1.6 x", "1.6", False),  # a variable, not a unit
    ("2.89e-19 nm", "2.88e-19", False),  # math-verify rounds both to 0 at 6 decimals
    ("\\approx -2,-3", "-2,-2", False),
    # the gold's percent sign left off; bases of numerals
    ("17.5", "17.5\\%", True),
    ("17.4", "17.5\\%", False),
    ("4210_6", "4210_{5}", False),
    ("4210_5", "4210_{5}", True),
    # a decimal against an exact gold: 3 significant figures, rounded at its last place
    ("2.6667", "\\frac{8}{3}", True),
    ("2.66", "\\frac{8}{3}", False),
    ("0.33", "\\frac{1}{3}", False),  # 2 figures state too little
    ("2.314814814815 \\times 10^{-3}", "\\frac{1}{432}", True),
    ("1.41", "\\sqrt{2}", True),
    ("(0.6,2.6667]", "(\\frac{3}{5},\\frac{8}{3}]", True),
    ("(0.6,2.6668]", "(\\frac{3}{5},\\frac{8}{3}]", False),
    ("(0,9) \\cup (0,36)", "(0,9) \\cup (9,36)", False),
    ("4.\\overline{6}", "\\frac{14}{3}", True),
    ("4.\\overline{3}", "\\frac{14}{3}", False),
    # an integer gold rounded to 3+ figures holds a decimal prediction to its figures; integers stay exact
    ("6630.65 \\text{ Å}", "6630", True),
    ("6631", "6630", False),
    ("6640.2", "6630", False),
    ("95.2", "100", False),  # 1 significant figure: exact
    # degrees and radians
    ("\\sin(90^{\\circ}-x)", "\\cos(x)", True),
    ("\\frac{\\sqrt{3}}{2}", "\\sin 60^\\circ", True),
    ("\\frac{\\pi}{3}", "60^\\circ", True),
    ("\\frac{\\pi}{4}", "60^\\circ", False),
    # functions applied to values, arbitrary constants named in another order
    ("I(t) = I(0) e^{-\\frac{t}{RC}}", "I(0) e^{-\\frac{t}{R C}}", True),
    ("I(t) = I(0) e^{-\\frac{2t}{RC}}", "I(0) e^{-\\frac{t}{R C}}", False),
    (
        "C_1\\cos(2t)+C_2\\sin(2t)-\\frac{1}{5}\\sin(3t)",
        "-\\sin (3 t) / 5+ C_{1} \\sin (2 t)+C_{2} \\cos (2 t)",
        True,
    ),
    ("c_1 e^{t} + c_2 e^{-t}", "C_{1} e^{-t}+C_{2} e^{t}", True),
    (
        "C_1\\cos(2t)+C_2\\sin(2t)+\\frac{1}{5}\\sin(3t)",
        "-\\sin (3 t) / 5+ C_{1} \\sin (2 t)+C_{2} \\cos (2 t)",
        False,
    ),
    ("\\frac{C_2}{C_1+C_2}", "\\frac{C_1}{C_1+C_2}", False),  # named quantities, not arbitrary constants
]

NOTATIONS_AND_EQUATIONS = [
    # notation: a function of time with or without its argument, unicode math, trailing spacing
    ("\\frac{dx}{dt} = kx(t) - a", "\\frac{d x}{d t}=k x-a", True),
    ("\\frac{dx}{dt} = kx(t) + a", "\\frac{d x}{d t}=k x-a", False),
    ("g(x) = x² - 2x + 2", "g(x)=x^2-2x+2", True),
    ("x² - 2x + 3", "x^2-2x+2", False),
    ("3√13", "3\\sqrt{13}", True),
    ("15,000\\,", "15000", True),
    ("17.5\\%", "17.5%", True),
    ("17.6\\%", "17.5%", False),
    # a choice with its value; an ordinal; a tuple against a bare list, in order
    ("\\textbf{(B)}\\ 12", "\\text{(B)}", True),
    ("(C) 12", "B", False),
    ("\\text{12th grade}", "12", True),
    ("\\text{13th grade}", "12", False),
    ("a = -2, b = -2", "-2,-2", True),
    ("(-2, -3)", "-2,-2", False),
    (
        "E_{1} \\text{ with probability } \\frac{1}{3}, \\quad E_{2} \\text{ with probability } \\frac{2}{3}",
        "E_{1},E_{2}",
        True,
    ),
    # an equation in several terms is never equal to its right side alone; a named value is
    ("f", "m \\frac{d v}{d t}+b v=f", False),
    ("\\dot{v} = \\frac{f}{m} - \\frac{b}{m}v", "m \\frac{d v}{d t}+b v=f", True),
    ("5", "x + y = 5", False),
    ("\\Delta E = 5 \\text{ eV}", "5", True),
    ("(x, y) = (3, 4)", "(3,4)", True),
]


@pytest.mark.parametrize(
    "pred,gold,equal", PLAIN_CASES + GENERAL_RULES + UNITS_PRECISION_AND_IDENTITIES + NOTATIONS_AND_EQUATIONS
)
def test_equivalent(pred, gold, equal):
    assert equivalent(pred, gold) is equal


def test_is_correct_uses_the_final_answer():
    assert is_correct("<think>\\boxed{1}</think>\\boxed{2}", "2")
    assert not is_correct("<think>\\boxed{2}</think>\\boxed{1}", "2")
    assert not is_correct("I have no idea.", "2")


def test_answers_sympy_would_evaluate_forever_are_compared_as_text_quickly():
    started = time.perf_counter()
    assert not equivalent("9^{9^{9^{9}}}", "1")
    assert equivalent("9^{9^{9^{9}}}", "9^{9^{9^9}}")
    assert not equivalent("100000!", "5")
    assert time.perf_counter() - started < 5


def test_text_answers_and_parsable_gold():
    assert is_text_answer("\\text{Monday}") and is_text_answer("no solution")
    assert not is_text_answer("5 \\text{ cm}") and not is_text_answer("\\frac{\\pi}{2}") and not is_text_answer("x")
    assert parses("42") and parses("(1,2]") and parses("\\text{even}") and parses("9^{9^{9^{9}}}")
    assert not parses("") and not parses("???") and not parses("\\frac{")


@pytest.mark.parametrize(
    "answer_type,gold,message",
    [
        ("math", "", "empty"),
        ("math", "\\frac{", "cannot be parsed"),
        ("choice", "E)", None),
        ("choice", "AB", "not an option"),
    ],
)
def test_unusable_gold_is_an_error_not_a_wrong_answer(answer_type, gold, message):
    problem = gold_problem(answer_type, gold)
    assert (problem is None) if message is None else (message in problem)
    if message:
        result = check_response(answer_type, "\\boxed{1}", gold)
        assert result["status"] == "error" and message in result["detail"]


def test_a_stated_final_answer_after_the_last_box_is_the_answer():
    response = "For the first laser \\boxed{0.13 \\text{ eV}}.\n\nThe final answer is $12.4 \\text{ eV}$."
    assert extract_answer(response) == "12.4 \\text{ eV}"
    assert extract_answer("The final answer is $3$. Check: \\boxed{3}") == "3"


def test_a_closing_sentence_that_names_constants_is_not_the_answer():
    response = (
        "So\n\n$$x(t) = c_1 e^t + c_2 e^{-t} + \\frac{1}{15} e^{-2t}$$\n\nwhere $c_1, c_2$ are arbitrary constants."
    )
    assert extract_answer(response) == "x(t) = c_1 e^t + c_2 e^{-t} + \\frac{1}{15} e^{-2t}"
