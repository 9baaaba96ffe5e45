"""Math answer checking: find the final answer in a response, compare it to gold.

Public API (RL reward code and notebooks call these):
    extract_answer(response) -> str | None
    equivalent(pred, gold) -> bool
    is_correct(response, gold) -> bool

Comparison is math-verify (sympy) plus what it misses or gets wrong on bare answers: text
answers (never compared as products of letters), percentages against ratios, `1.07e16` against
`1.07\\times10^{16}`, digit groups (`1 000`), numpy-style gold (`np.arcsin(10/13)`), equations
with the same left side, set/interval against relation (`x \\in [-2,7]` vs `-2 \\le x \\le 7`).
Answers whose evaluation would never end (`9^{9^{9^{9}}}`, `100000!`) are compared as text.

These calls run in-process with math-verify's own signal timeout when on a main thread; the
hard per-sample timeout (a worker killed from outside) is in `pool.py`, used by the stage.
"""

from __future__ import annotations

import math
import re
import threading
from functools import lru_cache

from sky_distill.verify import answer_forms as forms

VERIFIER_NAME = "sky_distill.verify.math"
# Bump when a change can alter any verdict (5: units, ranges, exact golds as decimals, constants;
# 6: closing sentences, a function's argument, unicode, equations in several terms).
VERIFIER_VERSION = "6"
INNER_TIMEOUT_S = 5  # math-verify's own signal timeout, main thread only; the pool's kill is the hard one

# --- finding the final answer ---------------------------------------------------------------

_THINK_END = re.compile(r"</think>|<\|end_of_thought\|>")
_SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)(?:<\|end_of_solution\|>|$)", re.DOTALL)
_FINAL_ANSWER = re.compile(
    r"final answer\s*(?:is|:)\s*[:\s]*(?:\$\$?|\\\(|\\\[)?\s*(.+?)\s*(?:\$\$?|\\\)|\\\])?\s*(?:\.\s*|\s*I hope.*)?$",
    re.IGNORECASE | re.MULTILINE,
)
_ANSWER_IS = re.compile(
    r"(?:the|my|final)\s+answer\s+(?:is|would be|should be)\s*:?\s*(?:\$\$?|\\\(|\\\[)?\s*([^\n$]+?)\s*(?:\$\$?|\\\)|\\\])?\s*(?:\.\s*)?$",
    re.IGNORECASE | re.MULTILINE,
)
_MATH_SPAN = re.compile(r"\\\((.+?)\\\)|\\\[(.+?)\\\]|\$\$(.+?)\$\$|\$([^$]+?)\$", re.DOTALL)
_EXPLAINS_SYMBOLS = re.compile(
    r"\s*(?:where\b|(?:here|with)\b.*\b(?:arbitrary|constants?|parameters?)\b)", re.IGNORECASE | re.DOTALL
)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?(?![\w])")


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`, `\\boxed 5`), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:]
    command = re.match(r"\\(?:boxed|fbox)\s*", rest)
    position = start + command.end()  # type: ignore[union-attr]
    if position < len(text) and text[position] != "{":
        bare = re.match(r"[^\s$.,;]+", text[position:])  # `\boxed 5`
        return bare.group(0) if bare else None
    depth = 0
    for index in range(position, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[position + 1 : index].strip()
    return None


def answer_region(response: str) -> str:
    """The part of a long response that holds the final answer: the solution, not the thinking."""
    solution = _SOLUTION.search(response)
    if solution:
        return solution.group(1)
    parts = _THINK_END.split(response)
    return parts[-1] if len(parts) > 1 else response


def _stated_answer(region: str, patterns: tuple = ()) -> str | None:
    """'The final answer is X' or 'the answer is X', the last one in the region."""
    for pattern in patterns or (_FINAL_ANSWER, _ANSWER_IS):
        found = [match.group(1).strip() for match in pattern.finditer(region)]
        found = [answer.rstrip(".").strip() for answer in found if answer.strip()]
        if found:
            answer = found[-1]
            inner = _stated_answer(answer) if answer != region else None  # "Final Answer: The final answer is $x$"
            return _strip_delimiters(inner or answer)
    return None


def _closing_statement(region: str) -> str | None:
    """The value of the closing sentences: 'Therefore, the polygon has 15 sides.' Sentences that name
    symbols ("where $c_1$ is a constant") or announce an answer that never comes ("... is:") are passed
    over; commentary under a heading after the answer ("### Explanation") is cut off first."""
    value = _value_of_closing_paragraphs(region)
    commentary = list(_COMMENTARY.finditer(region))
    if value is None and commentary:
        return _value_of_closing_paragraphs(region[: commentary[-1].start()])
    return value


def _value_of_closing_paragraphs(region: str) -> str | None:
    paragraphs = [p for p in re.split(r"\n\s*\n", region.strip()) if p.strip()]
    for paragraph in reversed(paragraphs[-2:]):
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z*])|\n+(?![^$]*\$\$)", paragraph.strip()) if s.strip()]
        for sentence in reversed(sentences[-2:]):
            if _EXPLAINS_SYMBOLS.match(sentence) or _ANNOUNCES.search(sentence):
                continue
            value = _value_of_sentence(sentence)
            if value is not None:
                return value
    return None


_COMMENTARY = re.compile(
    r"^[ \t]*(?:#+[ \t]*|\*\*[ \t]*)?(?:explanation|note|remarks?|verification)\b", re.IGNORECASE | re.MULTILINE
)
_ANNOUNCES = re.compile(r":\s*[*_]*\s*$")
_STATES_VALUE = re.compile(
    r"(?:\b(?:is|are|was|equals|be|of)|=|\\approx)\s+(?:approximately\s+|about\s+)?$", re.IGNORECASE
)


_CURRENCY = re.compile(r"(?:^|[\s(:])\$\d[\d,.]*\s*[-+=×*/]\s*\$\d")


def _value_of_sentence(sentence: str) -> str | None:
    """The last math span of a sentence, or a number stated after it (`$0.25$ M NaI ... is 36 mL` -> 36).
    Dollar signs before amounts (`Profit: $93 - $15 = $78.`) are currency, not math delimiters."""
    if _CURRENCY.search(sentence):
        sentence = re.sub(r"\$(?=\d)", "", sentence)
    spans = list(_MATH_SPAN.finditer(sentence))
    after = spans[-1].end() if spans else 0
    numbers = [
        match
        for match in _NUMBER.finditer(sentence, after)
        if not spans or _STATES_VALUE.search(sentence[: match.start()])
    ]
    if numbers:
        return numbers[-1].group(0)
    if spans:
        return next(group for group in spans[-1].groups() if group).strip()
    return None


def extract_answer(response: str) -> str | None:
    """The final answer of a response.

    In order: the last `\\boxed{}` after the thinking unless a stated final answer ("the final
    answer is ...") follows it, a stated final answer, the last boxed answer inside the thinking,
    "the answer is ...", and last the math or number of the closing sentences.
    """
    region = answer_region(response)
    boxed = last_boxed(region)
    if boxed is not None:
        after_box = region[max(region.rfind("\\boxed"), region.rfind("\\fbox")) :]
        restated = _FINAL_ANSWER.search(after_box)
        # a stated final answer after the last box restates the answer ("The final answer is $12.4$."),
        # unless it is words ("The final answer is clearly highlighted.")
        if restated and not is_text_answer(restated.group(1)):
            return _stated_answer(after_box, (_FINAL_ANSWER,))
        return boxed
    if _FINAL_ANSWER.search(region):
        return _stated_answer(region, (_FINAL_ANSWER,))
    if region is not response:
        boxed = last_boxed(response)
        if boxed is not None:
            return boxed
    answer_is = list(_ANSWER_IS.finditer(region))
    if not answer_is:
        return _closing_statement(region)
    if answer_is[-1].start() < _closing_start(region):  # "the answer is" long before the end
        return _closing_statement(region) or _stated_answer(region, (_ANSWER_IS,))
    return _stated_answer(region, (_ANSWER_IS,)) or _closing_statement(region)


def _closing_start(region: str) -> int:
    """Where the last two paragraphs of a region begin."""
    starts = [0] + [match.end() for match in re.finditer(r"\n\s*\n", region.rstrip())]
    return starts[-2] if len(starts) >= 2 else 0


# --- comparing two answers -------------------------------------------------------------------

_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|operatorname|mbox)\s*\{([^{}]*)\}")
_LATEX_WORDS = {
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "log", "ln", "exp", "sqrt", "frac", "dfrac", "tfrac", "pi", "infty", "inf", "cdot", "times", "pm",
    "mp", "le", "leq", "ge", "geq", "neq", "ne", "lt", "gt", "approx", "left", "right", "circ", "deg",
    "degree", "degrees", "begin", "end", "pmatrix", "bmatrix", "array", "cup", "cap", "in", "mod",
    "pmod", "bmod", "gcd", "lcm", "max", "min", "det", "binom", "choose", "mathbb", "quad", "qquad",
    "and", "or", "text", "mathrm", "boxed", "dots", "ldots", "cdots", "sum", "prod", "int", "lim",
    "vec", "overline", "hat", "bar", "alpha", "beta", "gamma", "delta", "theta", "lambda", "mu",
    "sigma", "omega", "phi", "emptyset", "varnothing", "percent", "pct", "percentage", "units", "unit",
}  # fmt: skip
_PERCENT = re.compile(r"\\%|%|\bpercent(?:age)?\b|\bpct\b")
_SCIENTIFIC = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)[eE]([+-]?\d+)(?![\w.])")
_DIGIT_GROUPS = re.compile(
    r"^[+-]?\d{1,3}(?:[ \u2009\u202f]|\\[,;! ]|\\ )\d{3}(?:(?:[ \u2009\u202f]|\\[,;! ])\d{3})*(?:\.\d+)?$"
)
_BARE_ARGUMENT = re.compile(
    r"\\(sin|cos|tan|cot|sec|csc|sinh|cosh|tanh|ln|log)\s*(\^\s*\{?-?\d+\}?)?\s+([a-zA-Z]|\d*[a-zA-Z]|\d+)(?![\w({])"
)
_NUMPY = re.compile(r"\b(?:np|numpy|math|sympy|sp)\.")
_FUNCTION_NAMES = re.compile(
    r"(?<![\\a-zA-Z])(arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|log|ln|exp|sqrt)(?=\s*\()"
)


def _strip_delimiters(text: str) -> str:
    text = re.sub(r"(?:\\[,;:! ]|~|\s)+$", "", text.strip())  # `15,000\,`: trailing spacing
    if len(text) > 4 and text.startswith("**") and text.endswith("**") and "**" not in text[2:-2]:
        text = text[2:-2].strip()  # markdown bold: `The answer is **5**.`
    for opening, closing in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(opening) and text.endswith(closing) and len(text) > len(opening) + len(closing):
            inner = text[len(opening) : -len(closing)]
            if "$" not in inner:
                return inner.strip()
    return text


def _is_prose(text: str) -> bool:
    """Text with delimited math or sentences in it: math-verify must find the answer itself."""
    return (
        bool(re.search(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox", text))
        or len(re.findall(r"(?<!\\)\b[a-zA-Z]{4,}\b", _TEXT_WRAPPER.sub("", text))) >= 3
    )


def _is_formula(text: str) -> bool:
    """Math with at most one word in it (`g(x) = x² - 2x`), not a sentence (`so it is 1,000.99m²`)."""
    return not _is_prose(text) and len(re.findall(r"\b[a-zA-Z]{3,}\b", _TEXT_WRAPPER.sub("", text))) < 2


def _words(text: str) -> list[str]:
    unwrapped = _TEXT_WRAPPER.sub(r" \1 ", text)
    unwrapped = re.sub(r"\\[a-zA-Z]+", " ", unwrapped)
    return [word for word in re.findall(r"[a-zA-Z]{2,}", unwrapped) if word.lower() not in _LATEX_WORDS]


def is_text_answer(text: str) -> bool:
    """A word answer ('Monday', '\\text{even}', 'no solution'): no digits and a real word in it."""
    stripped = _strip_delimiters(text)
    return not re.search(r"\d", stripped) and any(len(word) >= 3 for word in _words(stripped))


def normalize_text(text: str) -> str:
    """Case, spacing, punctuation, TeX wrappers and leading articles removed."""
    text = _strip_delimiters(text)
    text = _TEXT_WRAPPER.sub(r"\1", text)
    text = re.sub(r"\\[,;!: ]|~", " ", text).lower()
    text = re.sub(r"^(?:the|an?)\s+", "", text.strip())
    return re.sub(r"[\s.$,;:!?'\"`{}()\\]", "", text)


def normalize_bare(text: str) -> str:
    """Rewrite notations math-verify misreads in a bare (undelimited) answer."""
    text = _strip_delimiters(text)
    text = _NUMPY.sub("", text)
    text = re.sub(r"^\\(?:approx|sim|simeq)\s*", "", text)  # `\approx -2, -3`: the value, not a relation
    text = re.sub(r"\\\$\s*", "", text)  # currency
    text = _FUNCTION_NAMES.sub(r"\\\1", text)
    text = forms.unify_derivatives(text)  # sympy reads d M / d t of a bare symbol as 0
    text = _BARE_ARGUMENT.sub(r"\\\1\2(\3)", text)  # `\cos^2 t` -> `\cos^2(t)`: math-verify stops at the space
    text = _SCIENTIFIC.sub(r"\1\\times 10^{\2}", text)
    text = re.sub(r"(\d)\s*x\s*10\s*\^", r"\1\\times 10^", text)  # `3.2 x 10^5`
    text = re.sub(r"(\d)\.(?=\s*(?:[/)\]},]|$))", r"\1", text)  # `-1./3`: a trailing point
    text = re.sub(r"\\(?:mathrm|text|operatorname)\{([a-zA-Z])\}", r"\1", text)  # \mathrm{e}: math-verify stops at it
    text = re.sub(r"_\{?\\([a-zA-Z]+)\}?", r"_{\1}", text)  # L_{\odot}: a name, not a command
    text = re.sub(r"\s*,?\s*(?:\\quad\s*)?(?:\\text\{\s*and\s*\}|\band\b)(?:\s*\\quad)?\s*", ", ", text)
    if _DIGIT_GROUPS.match(text):
        text = re.sub(r"[ \u2009\u202f]|\\[,;! ]", "", text)
    return text.strip()


_POWER_TOWER = re.compile(r"\d+(?:\s*\^\s*\{?\s*\(?\s*\d+)+")
_FACTORIAL = re.compile(r"(\d+)\s*!")


def _tower_too_big(tower: str, max_digits: int = 10**5) -> bool:
    """Whether a tower of numeric powers (`9^{9^{9^9}}`) has more than `max_digits` digits."""
    numbers = [int(number) for number in re.findall(r"\d+", tower)]
    exponent = numbers[-1]
    for base in reversed(numbers[:-1]):
        if base > 1 and exponent * math.log10(base) > max_digits:
            return True
        exponent = base**exponent
    return False


def _too_costly(text: str) -> bool:
    """Answers sympy would evaluate forever: towers of huge powers, huge factorials or numerals."""
    if re.search(r"\d{2000,}", text):
        return True
    if any(int(number) >= 10**5 for number in _FACTORIAL.findall(text) if len(number) < 30) or any(
        len(number) >= 30 for number in _FACTORIAL.findall(text)
    ):
        return True
    return any(_tower_too_big(match.group(0)) for match in _POWER_TOWER.finditer(text))


def _inner_timeout() -> int | None:
    return INNER_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


_TRAILING_LETTER = re.compile(r"(?:^|[\s\d}])([a-zA-Z])\s*$")
_NUMERIC_FORMATTING = re.compile(r"\\(?:times|cdot|[,;:! ]|quad|qquad|(?:text|mathrm|mbox)\s*\{[^{}]*\})|~")


def _ends_in_variable(bare: str) -> bool:
    """Whether a bare answer ends in a one-letter variable that math-verify would drop as a unit: an
    expression (`\\frac{1}{m} t`, `2\\pi r h`), not a number with a unit (`5 m`, `1.6 \\times 10^3 m`)."""
    match = _TRAILING_LETTER.search(bare)
    if not match:
        return False
    prefix = _NUMERIC_FORMATTING.sub(" ", bare[: match.start(1)])
    return bool(re.search(r"[a-zA-Z\\]", prefix))


@lru_cache(maxsize=2)
def _extraction_config(keep_trailing_letters: bool) -> list:
    """math-verify's default extraction, without its unit removal when a trailing letter is a variable."""
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    latex = LatexExtractionConfig()
    if keep_trailing_letters:
        latex = LatexExtractionConfig(
            normalization_config=NormalizationConfig(
                basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
            )
        )
    return [latex, ExprExtractionConfig()]


@lru_cache(maxsize=4096)
def _parse_forms(text: str) -> tuple:
    """math-verify parses of an answer: the bare answer as LaTeX, else math-verify's own extraction."""
    import logging

    from math_verify import parse

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" warning is expected here
    timeout = _inner_timeout()
    text = _strip_delimiters(text)
    if _is_prose(text):
        return tuple(parse(text, parsing_timeout=timeout))
    bare = normalize_bare(text)
    forms = parse(f"${bare}$", parsing_timeout=timeout, extraction_config=_extraction_config(_ends_in_variable(bare)))
    if re.fullmatch(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+(?:,\d+)?)(?:\.\d+)?", bare):  # '1000,99', '1,22', '7,425,000'
        # ('1,3,5' is a list: math-verify's number reading would make it 1.3)
        forms = [*forms, *parse(bare, parsing_timeout=timeout)]
    return tuple(forms or parse(bare, parsing_timeout=timeout))


def _trusted(forms: tuple) -> bool:
    """Parses without `zoo`/`nan` in them: `\\gamma^{2}-1` read as the gamma function gives `zoo**2`,
    which equals any other such garbage."""
    import sympy

    return not any(isinstance(form, sympy.Basic) and form.has(sympy.zoo, sympy.nan) for form in forms)


_VARIABLE_GREEK = re.compile(
    r"\\(?!pi\b)(?:hbar|alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|lambda|mu|nu|xi|rho|sigma|tau|phi|varphi|chi|psi|omega)\b"
)


def _reads_whole(text: str, forms_: tuple) -> bool:
    """False when a text with variables in it parsed to a bare number (`\\hbar \\omega(v+1/2) - ...` -> 2)."""
    import sympy

    form = forms_[0] if forms_ else None
    return not (isinstance(form, sympy.Expr) and form.is_number and _VARIABLE_GREEK.search(text))


def _verify(gold_forms: tuple, pred_forms: tuple) -> bool:
    from math_verify import verify

    if not gold_forms or not pred_forms or not _trusted(gold_forms) or not _trusted(pred_forms):
        return False
    if verify(list(gold_forms), list(pred_forms), allow_set_relation_comp=True, timeout_seconds=_inner_timeout()):
        return True
    if not _assumptions_differ(gold_forms, pred_forms):
        return False
    gold_plain, pred_plain = _plain_symbols(gold_forms), _plain_symbols(pred_forms)
    return bool(
        verify(list(gold_plain), list(pred_plain), allow_set_relation_comp=True, timeout_seconds=_inner_timeout())
    )


def _assumptions_differ(gold_forms: tuple, pred_forms: tuple) -> bool:
    """Whether a symbol name appears on both sides with different assumptions."""
    import sympy

    def symbols(forms_: tuple) -> dict:
        return {
            symbol.name: symbol.assumptions0
            for form in forms_
            if isinstance(form, sympy.Basic)
            for symbol in form.free_symbols
        }

    gold, pred = symbols(gold_forms), symbols(pred_forms)
    return any(gold[name] != pred[name] for name in gold.keys() & pred.keys())


def _plain_symbols(forms_: tuple) -> tuple:
    """Symbols without assumptions: math-verify reads `v_o` as real in one spacing and not in another,
    and `x` (real) never equals `x` (not real)."""
    import sympy

    def plain(form):
        if not isinstance(form, sympy.Basic):
            return form
        swap = {symbol: sympy.Symbol(symbol.name) for symbol in form.free_symbols if symbol.assumptions0}
        return form.xreplace(swap) if swap else form

    return tuple(plain(form) for form in forms_)


def _percent_as_ratio(pred: str, gold: str) -> bool:
    """'28\\%' equals '0.28' (math-verify equates 28% with 28 and no more)."""
    if bool(_PERCENT.search(pred)) == bool(_PERCENT.search(gold)):
        return False
    percent, other = (pred, gold) if _PERCENT.search(pred) else (gold, pred)
    number = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*", _PERCENT.sub("", _strip_delimiters(percent)))
    if number and percent is gold and re.fullmatch(rf"\s*{re.escape(number.group(1))}0*\s*", _strip_delimiters(other)):
        return True  # `17.5` for the gold `17.5\%`: the percentage without its sign
    if not number or re.fullmatch(r"\s*-?\d+\s*", _strip_delimiters(other)):
        return False  # 28 is 28%, never 0.28 (math-verify decides that one)
    ratio = _plain_number(_parse_forms(other))
    if ratio is None:
        return False
    share = float(number.group(1)) / 100
    if abs(share - ratio) < 1e-9:
        return True
    gold_is_percent = percent is gold  # the gold's stated digits set the tolerance (`0.192` vs `19.19\%`)
    half_unit = forms.stated_precision(_PERCENT.sub("", _strip_delimiters(gold)) if gold_is_percent else gold)
    if half_unit is None:
        return False
    pred_value, gold_value = (ratio, share) if gold_is_percent else (share, ratio)
    return forms.within_stated_precision(pred_value, gold_value, half_unit / (100 if gold_is_percent else 1))


def _same_left_side(pred: str, gold: str) -> tuple[str, str] | None:
    """Right sides of two equations whose left sides are the same text (`\\frac{dM}{dt} = ...`)."""
    pred_sides, gold_sides = _strip_delimiters(pred).split("="), _strip_delimiters(gold).split("=")
    if len(pred_sides) != 2 or len(gold_sides) != 2:
        return None
    squash = lambda side: re.sub(r"\s|\\[,;! ]", "", side)  # noqa: E731
    if squash(pred_sides[0]) != squash(gold_sides[0]) or not squash(pred_sides[0]):
        return None
    return pred_sides[1], gold_sides[1]


def _focus(text: str) -> str:
    """A prose answer's boxed answer; a gold of several answers joined as `a$, $b` rejoined."""
    text = text.strip()
    if _is_prose(text) and len(re.findall(r"\\boxed|\\fbox", text)) == 1:
        boxed = last_boxed(text)
        if boxed and is_text_answer(boxed):
            return boxed
    if not text.startswith("$"):
        text = re.sub(r"(?<!\\)\$\s*(?<!\\)\$", " ", text)  # `a+$ $b`: an empty break inside a gold
    if not text.startswith("$") and len(re.findall(r"(?<!\\)\$", text)) % 2 == 1:  # an unbalanced, stray dollar
        text = re.sub(r"\$\s*\.?\s*$", "", text)  # `(-\infty, 0) \cup\{1\}$.`
        if len(re.findall(r"(?<!\\)\$", text)) == 1:
            text = re.sub(r"(?<!\\)\$", "", text)  # `221,$8`: one stray dollar between two answers
    if re.search(r"\$\s*,\s*\$", text) and not text.startswith("$"):
        return re.sub(r"\$\s*,\s*\$", ", ", text)
    return text


def _numbers_differ(gold_forms: tuple, pred_forms: tuple, relative: float = 1e-6) -> bool:
    """Two plain numbers further apart than `relative` (math-verify rounds to 6 decimals: 2.88e-19 = 2.89e-19)."""
    import sympy

    try:
        gold, pred = gold_forms[0], pred_forms[0]
        if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr) and gold.is_number and pred.is_number):
            return False
        gold_value, pred_value = float(sympy.N(gold)), float(sympy.N(pred))
    except (IndexError, TypeError, ValueError, OverflowError):
        return False
    scale = max(abs(gold_value), abs(pred_value))
    return scale > 0 and abs(gold_value - pred_value) > relative * scale


def _equation_against_value(equation_forms: tuple, value_forms: tuple) -> bool:
    """An equation whose left side is a sum (`m \\dot{v} + b v = f`) against a value (`f`): math-verify
    compares the value with the right side, which is right for a name (`x = 5`, `\\Delta E = 5`,
    `(p, q) = (3, 2)`), never for an equation in several terms."""
    import sympy

    equation, value = (equation_forms or [None])[0], (value_forms or [None])[0]
    if not isinstance(equation, sympy.Eq) or isinstance(value, sympy.Eq) or value is None:
        return False
    return isinstance(equation.lhs, sympy.Add)


def _has_tiny_numbers(*forms_) -> bool:
    """Whether an expression with variables holds a number below 1e-4 (`2.89e-19 n m`): math-verify rounds
    to 6 decimals, so it finds any two such expressions equal."""
    import sympy

    return any(
        isinstance(form, sympy.Expr)
        and form.free_symbols
        and any(number != 0 and abs(number) < 1e-4 for number in form.atoms(sympy.Number))
        for form in forms_
    )


def _squash(text: str) -> str:
    return re.sub(r"\s|\\[,;! ]|~|\\q?quad\b", "", _strip_delimiters(text)).replace("\\%", "%")


def _rewrite(text: str) -> str:
    """The notations of `answer_forms` made canonical (conditions, mixed numbers, derivatives, names)."""
    text = forms.drop_conditions(_strip_delimiters(text)).replace("\\varnothing", "\\emptyset")
    text = re.sub(r"(?<!\\)%", r"\\%", text)
    text = re.sub(r"\s*,?\s*(?:\\quad\s*)?(?:\\text\{\s*(?:and|or)\s*\}|\b(?:and|or)\b)(?:\s*\\quad)?\s*", ", ", text)
    text = forms.drop_trailing_words(forms.rewrite_mixed_number(forms.repeating_decimal(text)))
    text = forms.unify_subscripts(forms.unify_derivatives(forms.degrees_in_trig_as_radians(text)))
    return forms.expand_plus_minus(_values_of_named_list(text))


def _values_of_named_list(text: str) -> str:
    """`x = 1, y = 2, z = 3` -> `(1, 2, 3)`; `f(x) = x, f(x) = 2 - x` -> `x, 2 - x` (alternatives)."""
    parts = forms.split_top_level(text)
    if len(parts) < 2:
        return text
    named = [re.fullmatch(rf"({_NAME})\s*=\s*(.+)", part, re.DOTALL) for part in parts]
    if not all(named):
        return text
    names = [match.group(1).replace(" ", "") for match in named]  # type: ignore[union-attr]
    values = ", ".join(match.group(2) for match in named)  # type: ignore[union-attr]
    return f"({values})" if len(set(names)) == len(names) else values


_NAME = r"[a-zA-Z](?:_\{[^{}=]*\}|_\w)?(?:\([a-zA-Z]\))?"


def _plain_number(forms_: tuple) -> float | None:
    import sympy

    form = forms_[0] if forms_ else None
    if not isinstance(form, sympy.Expr) or not form.is_number:
        return None
    try:
        value = complex(sympy.N(form))
    except (TypeError, ValueError, OverflowError):
        return None
    return value.real if abs(value.imag) < 1e-12 * max(1.0, abs(value.real)) else None


def _same_at_random_points(pred_form, gold_form) -> bool:
    """Two expressions equal as functions: the same value at random points (trig and complex
    identities, a product of complex factors against its expansion). `i` is the imaginary unit."""
    import sympy

    if not (isinstance(pred_form, sympy.Expr) and isinstance(gold_form, sympy.Expr)):
        return False
    steps = (sympy.floor, sympy.ceiling, sympy.frac, sympy.Mod, sympy.Piecewise)
    if pred_form.has(*steps) or gold_form.has(*steps):
        return False  # equal at a few points says nothing about step functions
    pred_form, gold_form = _opaque_applications(pred_form, gold_form)
    swap = {symbol: sympy.I for symbol in pred_form.free_symbols | gold_form.free_symbols if symbol.name == "i"}
    if not swap and not (pred_form.free_symbols or gold_form.free_symbols):
        return False  # two numbers: math-verify has compared them
    pred_form, gold_form = pred_form.subs(swap), gold_form.subs(swap)
    scales = _values_at_random_points(gold_form)
    if scales is None:
        return False
    for renamed in _constants_renamed(pred_form, gold_form):
        differences = _values_at_random_points(renamed - gold_form)
        if differences is not None and all(_negligible(d, g) for d, g in zip(differences, scales)):
            return True
    return False


def _negligible(difference: complex, scale: complex) -> bool:
    """A difference that is rounding at the scale of the gold's value (relative; absolute where it is 0)."""
    return abs(difference) <= (1e-10 * abs(scale) if abs(scale) > 1e-30 else 1e-12)


def _opaque_applications(*expressions):
    """Undefined functions applied to values (`I(0)`, `x(t_0)`) as plain symbols, the same on both sides,
    so the expressions around them can be evaluated."""
    import sympy
    from sympy.core.function import AppliedUndef

    applications = set().union(*(expression.atoms(AppliedUndef) for expression in expressions))
    if not applications:
        return expressions
    names = {application: sympy.Symbol(f"applied:{application}") for application in applications}
    return tuple(expression.xreplace(names) for expression in expressions)


_CONSTANT = re.compile(r"[cCkK](?:_\{?\d+\}?)?")


def _constants_renamed(pred_form, gold_form, most: int = 4):
    """The prediction, then the prediction with its arbitrary constants (`C_1`, `c_2`, `K`) renamed to
    the gold's in every order: `C_1 \\cos t + C_2 \\sin t` = `C_2 \\cos t + C_1 \\sin t` as general solutions.
    Only where both are linear in their constants and each constant multiplies a function of another
    variable (a general solution), never for a formula in named quantities like `\\frac{C_1 C_2}{C_1 + C_2}`."""
    from itertools import permutations

    yield pred_form
    pred_constants, gold_constants = _free_constants(pred_form), _free_constants(gold_form)
    if not 2 <= len(gold_constants) == len(pred_constants) <= most:
        return
    if not (_general_solution_in(pred_form, pred_constants) and _general_solution_in(gold_form, gold_constants)):
        return
    for order in permutations(gold_constants):
        mapping = dict(zip(pred_constants, order))
        if any(source != target for source, target in mapping.items()):
            yield pred_form.xreplace(mapping)


def _free_constants(form) -> list:
    return sorted((symbol for symbol in form.free_symbols if _CONSTANT.fullmatch(symbol.name)), key=str)


def _general_solution_in(form, constants: list) -> bool:
    import sympy

    for constant in constants:
        coefficient = sympy.diff(form, constant)
        if coefficient.free_symbols & set(constants) or not (coefficient.free_symbols - set(constants)):
            return False
    return True


def _same_equation(pred_forms: tuple, gold_forms: tuple) -> bool:
    """Two equations with the same solution set: `lhs - rhs` of one a constant multiple of the
    other's (the ratio is the same nonzero number at random points)."""
    import sympy

    pred, gold = (pred_forms or [None])[0], (gold_forms or [None])[0]
    if not (isinstance(pred, sympy.Eq) and isinstance(gold, sympy.Eq)):
        return False
    try:
        pred_side, gold_side = pred.lhs - pred.rhs, gold.lhs - gold.rhs
    except TypeError:  # sets or tuples on a side
        return False
    if not pred_side.free_symbols or pred_side.free_symbols != gold_side.free_symbols:
        return False
    ratios = _values_at_random_points(pred_side / gold_side)
    return ratios is not None and all(abs(r - ratios[0]) <= 1e-9 * abs(ratios[0]) for r in ratios) and ratios[0] != 0


def _values_at_random_points(expression, points: int = 3) -> list[complex] | None:
    """The values of an expression at a few fixed pseudo-random points, or None if any is undefined."""
    import random

    symbols = sorted(expression.free_symbols, key=lambda symbol: symbol.name)
    generator = random.Random(0)
    values = []
    for _ in range(points):
        point = {symbol: generator.uniform(0.5, 4.5) for symbol in symbols}
        try:
            value = complex(expression.evalf(30, subs=point))
        except Exception:  # sympy raises many kinds on odd input
            return None
        if not math.isfinite(abs(value)):
            return None
        values.append(value)
    return values


def _named_sides(pred: str, gold: str) -> tuple[str, str] | None:
    """`y = 2x+3` vs `f(x) = 2x+3`, `m_{max} = n^2-n-1` vs `n^2-n-1`: compare what the names stand for."""

    def value(text: str) -> str | None:
        match = re.fullmatch(rf"\s*({_NAME})\s*=\s*([^=]+)", text)
        return match.group(2) if match else None

    pred_value, gold_value = value(pred), value(gold)
    if pred_value is None and gold_value is None:
        return None
    if (pred_value is None and "=" in pred) or (gold_value is None and "=" in gold):
        return None
    return pred_value or pred, gold_value or gold


def _compare(pred: str, gold: str) -> bool:
    """math-verify with the checks around it: relative numbers, equations, identities."""
    if _percent_as_ratio(pred, gold):
        return True
    sides = _same_left_side(pred, gold) or _named_sides(_strip_delimiters(pred), _strip_delimiters(gold))
    if sides is not None:  # the values decide: no parse of the whole equation, no Eq-against-value verify
        return _compare_values(*sides) or _same_quantity(*sides)
    gold_forms, pred_forms = _parse_forms(gold), _parse_forms(pred)
    if not (_reads_whole(gold, gold_forms) and _reads_whole(pred, pred_forms)):
        return False
    if _equation_against_value(gold_forms, pred_forms) or _equation_against_value(pred_forms, gold_forms):
        return False
    if _verify(gold_forms, pred_forms):
        bare = not (_is_prose(_strip_delimiters(pred)) or _is_prose(_strip_delimiters(gold)))
        if bare and _has_tiny_numbers(gold_forms[0], pred_forms[0]):  # math-verify rounds to 6 decimals
            return _same_at_random_points(pred_forms[0], gold_forms[0]) or (
                not _numbers_differ(gold_forms, pred_forms) and _plain_number(pred_forms) is not None
            )
        return not (bare and _numbers_differ(gold_forms, pred_forms))
    if not (_trusted(gold_forms) and _trusted(pred_forms)) or not gold_forms or not pred_forms:
        return False
    return _same_equation(pred_forms, gold_forms) or _same_at_random_points(pred_forms[0], gold_forms[0])


def _compare_values(pred: str, gold: str) -> bool:
    import sympy

    gold_forms, pred_forms = _parse_forms(gold), _parse_forms(pred)
    if not (gold_forms and pred_forms and _trusted(gold_forms) and _trusted(pred_forms)):
        return False
    if not (_reads_whole(gold, gold_forms) and _reads_whole(pred, pred_forms)):
        return False
    gold_form, pred_form = gold_forms[0], pred_forms[0]
    steps = (sympy.floor, sympy.ceiling, sympy.frac, sympy.Mod, sympy.Piecewise)
    if (
        isinstance(gold_form, sympy.Expr)
        and isinstance(pred_form, sympy.Expr)
        and gold_form.free_symbols
        and not (gold_form.has(*steps) or pred_form.has(*steps))
    ):
        return _same_at_random_points(pred_form, gold_form)  # complete for functions, and cheaper than verify
    if _verify(gold_forms, pred_forms):
        return not _numbers_differ(gold_forms, pred_forms)
    return False


def _same_time_or_precision(pred: str, gold: str) -> bool | None:
    """The verdict when the gold is a time of day or a decimal with a stated precision, else None."""
    gold_minutes = forms.minutes_of_day(_strip_delimiters(gold))
    if gold_minutes is not None:
        pred_minutes = forms.minutes_of_day(_strip_delimiters(pred))
        return None if pred_minutes is None else abs(pred_minutes - gold_minutes) < 1e-9
    if _PERCENT.search(gold) or _PERCENT.search(pred):
        return None
    if _is_prose(_strip_delimiters(pred)):
        return None
    half_unit = forms.stated_precision(normalize_bare(gold))
    if half_unit is None:
        return _rounded_to_decimal(pred, gold)
    gold_value, pred_value = _plain_number(_parse_forms(gold)), _plain_number(_parse_forms(pred))
    if gold_value is None or pred_value is None:
        return None
    return forms.within_stated_precision(pred_value, gold_value, half_unit)


def _rounded_to_decimal(pred: str, gold: str) -> bool | None:
    """A decimal prediction against a gold that states no decimals: an exact gold (`\\frac{8}{3}`,
    `\\sqrt{2}`) matches a prediction of 3 or more significant figures that is the gold rounded at the
    prediction's last place (`2.6667`); an integer gold rounded to 3 or more significant figures
    (`6630`) matches a prediction that rounds to it (`6630.65`). Else None (math-verify decides)."""
    places = forms.decimal_places(normalize_bare(pred))
    if places is None:
        return None
    gold_value, pred_value = _plain_number(_parse_forms(gold)), _plain_number(_parse_forms(pred))
    if gold_value is None or pred_value is None:
        return None
    integer_half_unit = forms.rounded_integer_precision(normalize_bare(gold))
    if integer_half_unit is not None and forms.within_stated_precision(pred_value, gold_value, integer_half_unit):
        return True
    significant, last_place = places
    if significant < 3:
        return None
    return abs(pred_value - gold_value) <= 0.5 * 10.0**last_place * (1 + 1e-9) or None


def equivalent(pred: str, gold: str) -> bool:
    """Whether an answer equals the gold answer (both extracted answers, or short text with one)."""
    if pred is None or gold is None:
        return False
    pred, gold = (forms.ascii_math(text) if _is_formula(text) else text for text in (_focus(pred), _focus(gold)))
    if _squash(pred) == _squash(gold) != "":
        return True
    gold_choice = forms.choice_letter(gold, alone=True)
    pred_choice = forms.choice_letter(pred, alone=False) if gold_choice else None
    if pred_choice:
        return pred_choice == gold_choice  # `(B) 12` answers the choice `B`
    pred_is_text, gold_is_text = is_text_answer(pred), is_text_answer(gold)
    if pred_is_text or gold_is_text:
        if normalize_text(pred) == normalize_text(gold) != "":
            return True
        if pred_is_text and gold_is_text:
            return False  # 'Monday' is not the product d*a*m*n*o*y
    if _too_costly(pred) or _too_costly(gold):
        return _squash(normalize_bare(pred)).replace("{", "").replace("}", "") == _squash(normalize_bare(gold)).replace(
            "{", ""
        ).replace("}", "")
    if forms.states_range(pred) and not forms.states_range(gold) and len(_NUMBER.findall(gold)) < 2:
        return False  # `Between 25 cents and 75 cents` is not 75
    pred_base, gold_base = forms.number_base(pred), forms.number_base(gold)
    if pred_base and gold_base and pred_base != gold_base:
        return False  # `4210_6` is not `4210_{5}` (math-verify drops the base)
    pred_rewritten, gold_rewritten = _rewrite(pred), _rewrite(gold)
    pred_condition, gold_condition = forms.condition_of(pred), forms.condition_of(gold)
    if pred_condition and gold_condition and _squash(pred_condition) != _squash(gold_condition):
        return _compare(pred, gold)  # two different conditions must not vanish from both sides
    if _squash(pred_rewritten) == _squash(gold_rewritten) != "":  # `E_1 \text{ or } E_2` vs `E_{1},E_{2}`
        return True
    verdict = _same_time_or_precision(pred_rewritten, gold_rewritten)
    if verdict is not None:
        return verdict
    if _compare(pred, gold):
        return True
    if forms.is_vector(pred_rewritten) or forms.is_vector(gold_rewritten):
        pred_rewritten, gold_rewritten = _as_tuple(pred_rewritten), _as_tuple(gold_rewritten)
    if (pred_rewritten, gold_rewritten) != (pred, gold) and _compare(pred_rewritten, gold_rewritten):
        return True
    return (
        _same_elements(pred_rewritten, gold_rewritten)
        or _same_quantity(pred, gold)
        or _same_angle(pred, gold)
        or _same_without_arguments(pred, gold)
    )


_APPLIED_TO_T = re.compile(r"([a-zA-Z])\(\s*t\s*\)")


def _drop_time_arguments(text: str) -> tuple[str, set[str]]:
    """`k x(t) - a` -> (`k x - a`, {`x`}); commands like `\\sin(t)` are left alone."""
    names: set[str] = set()

    def drop(match: re.Match) -> str:
        if re.search(r"\\[a-zA-Z]*$", text[: match.start() + 1]):
            return match.group(0)
        names.add(match.group(1))
        return match.group(1)

    return _APPLIED_TO_T.sub(drop, text), names


def _same_without_arguments(pred: str, gold: str) -> bool:
    """`k x(t) - a` against `k x - a`: a function of time written with its argument on one side only."""
    if "(" not in pred + gold:
        return False
    (pred_bare, pred_names), (gold_bare, gold_names) = _drop_time_arguments(pred), _drop_time_arguments(gold)
    if bool(pred_names) == bool(gold_names):
        return False
    other = gold if pred_names else pred  # a name written bare on the other side: `k x - a`
    if not any(re.search(rf"(?<![\\a-zA-Z]){name}(?![a-zA-Z(])", other) for name in pred_names | gold_names):
        return False
    return (pred_bare, gold_bare) != (pred, gold) and equivalent(pred_bare, gold_bare)


def _same_angle(pred: str, gold: str) -> bool:
    """`60^\\circ` against `\\frac{\\pi}{3}`: an angle in degrees on one side, radians on the other."""
    pred_radians, gold_radians = forms.degrees_as_radians(pred), forms.degrees_as_radians(gold)
    if pred_radians and "\\pi" in gold and not gold_radians:
        return equivalent(pred_radians, gold)
    if gold_radians and "\\pi" in pred and not pred_radians:
        return equivalent(pred, gold_radians)
    return False


def _same_quantity(pred: str, gold: str) -> bool:
    """`1.6 \\, \\mathrm{K}` or `\\text{about } 1.6` against `1.6`: the numbers decide when at most one side
    names a unit, or both name the same one (`1.6 nm` is never `1.6 m`)."""
    pred_parts, gold_parts = (
        forms.number_with_unit(_strip_delimiters(pred)),
        forms.number_with_unit(_strip_delimiters(gold)),
    )
    if pred_parts is None and gold_parts is None:
        return False
    pred_number, pred_unit = pred_parts or (pred, "")
    gold_number, gold_unit = gold_parts or (gold, "")
    if pred_unit and gold_unit and pred_unit != gold_unit:
        return False
    return (pred_number, gold_number) != (pred, gold) and equivalent(pred_number, gold_number)


_BRACKETED = re.compile(r"\s*(?:\\left\s*)?([(\[])(.*?)(?:\\right\s*)?([)\]])\s*", re.DOTALL)


def _balanced(text: str) -> bool:
    depth = 0
    for character in text:
        depth += character in "([{"
        depth -= character in ")]}"
        if depth < 0:
            return False
    return depth == 0


def _same_elements(pred: str, gold: str) -> bool:
    """Two intervals or tuples with the same brackets (or a tuple against a bare list) whose elements are
    equal one by one, each by the rules for one answer (`(0.6, 2.6667]` = `(\\frac{3}{5}, \\frac{8}{3}]`)."""
    pred_match, gold_match = _BRACKETED.fullmatch(pred), _BRACKETED.fullmatch(gold)
    if not pred_match or not _balanced(pred_match[2]):
        return False
    if gold_match:
        if (pred_match[1], pred_match[3]) != (gold_match[1], gold_match[3]) or not _balanced(gold_match[2]):
            return False  # other brackets, or `(0,9) \cup (0,36)`: two groups, not one
        gold_elements = gold_match[2]
    elif pred_match[1] + pred_match[3] == "()":
        gold_elements = gold  # `a = -2, b = -2` (a tuple) against the bare list `-2,-2`; a bare gold is no interval
    else:
        return False
    pred_parts, gold_parts = forms.split_top_level(pred_match[2]), forms.split_top_level(gold_elements)
    return 2 <= len(pred_parts) == len(gold_parts) <= 10 and all(map(equivalent, pred_parts, gold_parts))


def _as_tuple(text: str) -> str:
    """A vector in any notation, or a bracketed list, as a parenthesised tuple."""
    text = forms.vector_as_tuple(text)
    bracketed = re.fullmatch(r"\s*(?:\\left)?\s*\[(.*)(?:\\right)?\s*\]\s*", text, re.DOTALL)
    return f"({bracketed.group(1)})" if bracketed else text


def is_correct(response: str, gold: str) -> bool:
    """Whether the final answer of a whole response equals the gold answer."""
    pred = extract_answer(response)
    return pred is not None and equivalent(pred, gold)


def parses(answer: str) -> bool:
    """Whether an answer can be compared at all: math-verify reads it, or it is text or too big to evaluate."""
    if not answer or not answer.strip():
        return False
    if _too_costly(answer) or is_text_answer(answer):
        return True
    return any(not isinstance(form, str) for form in _parse_forms(_focus(answer)))
