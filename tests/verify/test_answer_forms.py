"""Rewrite rules for answer notations, the near-miss generator, and the labelled-set readers."""

import json

import pytest

from sky_distill.verify import answer_forms as forms
from sky_distill.verify.labelled import dress, edit_final_answer, near_misses, read_pairs
from sky_distill.verify.math import equivalent
from tests.conftest import BENCHMARKS, requires_shared


def test_times_of_day_become_minutes():
    assert forms.minutes_of_day("9:15 p.m.") == forms.minutes_of_day("21:15") == 21 * 60 + 15
    assert forms.minutes_of_day("12:05 \\text{ a.m.}") == 5
    assert forms.minutes_of_day("21:15:30") == 21 * 60 + 15.5
    assert forms.minutes_of_day("13:15 p.m.") is None and forms.minutes_of_day("1:75") is None


def test_conditions_and_notation_rewrites():
    assert forms.drop_conditions("e^{-t} \\text{ for } t > 0").strip() == "e^{-t}"
    assert forms.drop_conditions("x + y") == "x + y"
    assert forms.drop_conditions("2 \\text{ (since } x > 1)").strip() == "2"
    assert forms.expand_plus_minus("1, 3 \\pm \\sqrt{2}") == "1, 3 + \\sqrt{2}, 3 - \\sqrt{2}"
    assert forms.expand_plus_minus("(\\pm 1, 0)") == "(+ 1, 0), (- 1, 0)"  # two points
    assert forms.rewrite_mixed_number("2 3/4") == "(2+3/4)" and forms.rewrite_mixed_number("2 5/4") == "2 5/4"
    assert forms.unify_derivatives("\\frac{dx}{dt} = x'") == "\\dot{x} = \\dot{x}"
    assert forms.unify_derivatives("\\frac{d^2 v_o}{dt^2} + \\dot v_{o}") == "\\ddot{v}_{o} + \\dot{v}_{o}"
    assert forms.unify_subscripts("V0 + V_1 + 7.2e6") == "V_{0} + V_{1} + 7.2e6"
    assert forms.vector_as_tuple("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}") == "(1, 2)"
    assert forms.vector_as_tuple("\\begin{pmatrix} 1 & 2 \\end{pmatrix}") == "\\begin{pmatrix} 1 & 2 \\end{pmatrix}"


def test_round_4_notation_helpers():
    assert forms.drop_conditions("a \\text{ if } n > 1, \\text{ and } b \\text{ if } n = 1") == "a, b"
    assert forms.states_range("\\text{between } 2 \\text{ and } 5") and not forms.states_range("2 \\text{ and } 5")
    assert forms.number_with_unit("1.6 \\, \\mathrm{K}") == ("1.6", "K")
    assert forms.number_with_unit("\\approx 3 \\times 10^{5} nm") == ("3 \\times 10^{5}", "nm")
    assert forms.number_with_unit("1.6") is None and forms.number_with_unit("1.6 x") is None
    assert forms.repeating_decimal("0.1\\overline{36}") == "\\frac{135}{990}"
    assert forms.number_base("4210_{5}") == "5" and forms.number_base("4210") is None
    assert forms.rounded_integer_precision("6630") == 5 and forms.rounded_integer_precision("1500") is None
    assert forms.decimal_places("2.6667") == (5, -4) and forms.decimal_places("3") is None
    assert forms.degrees_as_radians("60^\\circ") == "60\\cdot\\frac{\\pi}{180}"
    assert forms.ascii_math("x² − 3√13 · π") == "x^{2} - 3\\sqrt{13} \\cdot  \\pi "
    assert forms.choice_letter("\\text{(B)}", alone=True) == "B" and forms.choice_letter("(B) 12", alone=True) is None
    assert forms.choice_letter("\\textbf{(C)}\\ 12", alone=False) == "C"
    assert forms.drop_trailing_words("\\text{12th grade}") == "12" and forms.drop_trailing_words("12x") == "12x"


@pytest.mark.parametrize(
    "gold,half_unit",
    [
        ("27.39", 0.005),
        ("1.70e4", 50),
        ("3.14\\times10^{-5}", 0.005e-5),
        ("0.10", 0.005),
        ("42", None),
        ("\\frac12", None),
    ],
)
def test_stated_precision(gold, half_unit):
    assert (
        forms.stated_precision(gold) == pytest.approx(half_unit) if half_unit else forms.stated_precision(gold) is None
    )


def test_near_misses_keep_magnitude_and_form():
    assert near_misses("3.14\\times10^{-5}") == ["3.15\\times10^{-5}"]
    assert near_misses("-12") == ["-13", "12"]
    assert near_misses("4210_{5}") == ["4211_{5}"]  # the base (a subscript) is left alone
    assert near_misses("\\text{even}") == []


def test_edit_final_answer_replaces_or_restates_the_last_box():
    trace = "think \\boxed{3}<|begin_of_solution|>so \\boxed{\\frac{1}{2}}<|end_of_solution|>"
    assert edit_final_answer(trace, "\\frac{1}{3}", "boxed").endswith("\\boxed{\\frac{1}{3}}<|end_of_solution|>")
    stated = edit_final_answer(trace, None, "stated")
    assert "\\boxed{\\frac" not in stated and stated.endswith("The final answer is $\\frac{1}{2}$.<|end_of_solution|>")


def test_bad_labelled_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "pairs.jsonl"
    row = {"gold": "1", "pred": "1", "label": True, "kind": "numbers", "source": "s"}
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "label": "yes"}) + "\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: field 'label'"):
        read_pairs(path)


def _near_miss_pairs(per_benchmark: int | None) -> list[tuple[str, str]]:
    pairs = []
    for name in ("math500", "minerva_math", "olympiadbench", "aime24", "amc23"):
        rows = [json.loads(line) for line in (BENCHMARKS / f"{name}.jsonl").read_text().splitlines() if line.strip()]
        for row in rows[:per_benchmark]:
            pairs += [(variant, str(row["answer"])) for variant in near_misses(str(row["answer"]))]
    return pairs


@requires_shared(BENCHMARKS)
def test_no_near_miss_of_a_benchmark_gold_is_accepted_sample():
    """A sample for CI; `scripts/bench_verify.py` runs all 3,278 near misses of every gold."""
    pairs = _near_miss_pairs(per_benchmark=15)
    accepted = [pair for pair in pairs if equivalent(*pair)]
    assert len(pairs) > 100 and accepted == []


@requires_shared(BENCHMARKS)
def test_no_dressed_near_miss_is_accepted_sample():
    """Near misses with a unit, a qualifier or a name (`x = `) around them: the rules that strip those
    must not make a wrong number right. `scripts/bench_verify.py` runs them for every gold."""
    pairs = [(dressed, gold) for variant, gold in _near_miss_pairs(per_benchmark=6) for dressed in dress(variant)]
    accepted = [pair for pair in pairs if equivalent(*pair)]
    assert len(pairs) > 150 and accepted == []
