"""Notations of one answer that math-verify reads differently: rewrite rules and the precision a
gold states. Pure text functions; `math.py` applies them before and around math-verify.

- conditions after an answer (`\\text{ for } t > 0`, `\\text{ with probability } 1`, a per-case
  `\\text{(when n is even)}`) are dropped;
- times of day (`9:15 p.m.`, `21:15`, `21:15:00`) become minutes after midnight;
- mixed numbers (`2 3/4`) become sums; a number followed by bare words (`10 weeks`) loses the words;
- derivatives in dot, prime and Leibniz notation (`\\dot{x}`, `x'`, `\\frac{dx}{dt}`) become one name;
- vectors (`\\langle a, b \\rangle`, `a\\mathbf{i} + b\\mathbf{j}`, a one-column matrix) become tuples;
- numbers with a unit or a qualifier (`1.6 \\, \\mathrm{K}`, `\\approx 1.6`) split into number and unit; ranges
  ("between 2 and 5"), bases of numerals, choices with their value (`(B) 12`), repeating decimals,
  unicode math (`x²`, `√`) and degrees (inside trigonometric functions, or against radians) are read;
- a gold decimal states its precision: `27.39` asks for 2 decimals, `1.70e4` for 3 significant
  figures; a prediction matches when it rounds to the gold there, so `3.15e-5` never equals `3.14e-5`.
"""

from __future__ import annotations

import math
import re

_UNWRAP = re.compile(r"\\(?:text|textrm|mathrm|mbox|textit)\s*\{([^{}]*)\}")
_CONDITION_WORDS = r"(?:for|with|when|where|if|provided|assuming|since|because|given)"
_PER_CASE = re.compile(rf"\(\s*{_CONDITION_WORDS}\b[^()]*\)", re.IGNORECASE)
_TRAILING_CONDITION = re.compile(
    rf"(?:,|;|\\quad|\\qquad|\\[,;:]|\s)*\b{_CONDITION_WORDS}\b(?:\s+(?:all|every|some|any|each|probability))?\s+.*$",
    re.IGNORECASE | re.DOTALL,
)


_TOP_LEVEL_COMMA = re.compile(r",(?![^()\[\]{}]*[)\]}])")


def split_top_level(text: str) -> list[str]:
    """The parts of a list, split at commas outside brackets and braces (`(1, 2), 3` -> `(1, 2)`, `3`)."""
    return [part.strip() for part in _TOP_LEVEL_COMMA.split(text)]


_LEADING_AND = re.compile(r"^(?:\\quad|\\qquad|\s)*(?:(?:and|or)\b\s*)?", re.IGNORECASE)


def _drop_condition(text: str) -> str:
    unwrapped = _PER_CASE.sub(" ", _UNWRAP.sub(r" \1 ", text))
    stripped = _TRAILING_CONDITION.sub("", unwrapped).strip()
    return stripped if stripped and re.search(r"[\w\\]", stripped) else text


def drop_conditions(text: str) -> str:
    """`x(t) = ... \\text{ for } t > 0` -> `x(t) = ...`; per-case parentheses removed from each part;
    a list whose every part carries its own condition keeps its parts (`E_1 \\text{ with probability }
    \\frac13, \\text{ and } E_2 \\text{ with probability } \\frac23` -> `E_1, E_2`)."""
    if not re.search(rf"\b{_CONDITION_WORDS}\b", text, re.IGNORECASE):
        return text
    parts = [_LEADING_AND.sub("", _UNWRAP.sub(r" \1 ", part).strip()) for part in split_top_level(text)]
    if len(parts) > 1 and all(re.search(rf"\S\s*\b{_CONDITION_WORDS}\b", part, re.IGNORECASE) for part in parts):
        kept = [_drop_condition(part) for part in parts]
        if all(kept[index] != parts[index] for index in range(len(parts))):
            return ", ".join(kept)
    return _drop_condition(text)


_RANGE = re.compile(r"\b(?:between|from)\b[^,;]*?\d[^,;]*?\b(?:and|to)\b[^,;]*?\d", re.IGNORECASE)


def states_range(text: str) -> bool:
    """`Between 25 cents and 75 cents`, `from 2 to 5`: a range of values, never one of its ends."""
    return bool(_RANGE.search(_UNWRAP.sub(r" \1 ", text)))


_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)\b")
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*\^\s*\{?\s*\\circ\s*\}?")


def degrees_in_trig_as_radians(text: str) -> str:
    """`\\sin(90^{\\circ} - x)` -> `\\sin(90\\cdot\\frac{\\pi}{180} - x)`: degrees in an expression with a
    trigonometric function become radians, so `\\sin 60^\\circ` is a value and an identity can be compared at
    random points (`\\cos(x)`)."""
    if not _TRIG.search(text) or "circ" not in text:
        return text
    return _DEGREES.sub(r"(\1\\cdot\\frac{\\pi}{180})", text)


def degrees_as_radians(text: str) -> str | None:
    """`60^\\circ` -> `60\\cdot\\frac{\\pi}{180}`: a bare angle in degrees, for comparing with radians; else None."""
    text = text.strip()
    sign, angle = ("-", text[1:]) if text.startswith("-") else ("", text)
    match = _DEGREES.fullmatch(angle.strip())
    return f"{sign}{match.group(1)}\\cdot\\frac{{\\pi}}{{180}}" if match else None


def repeating_decimal(text: str) -> str:
    """`4.\\overline{6}` -> `\\frac{42}{9}`, `0.1\\overline{36}` -> `\\frac{135}{990}`; else unchanged."""
    match = re.fullmatch(r"\s*(-?)(\d*)\.(\d*)\\overline\s*\{(\d+)\}\s*", text)
    if not match:
        return text
    sign, whole, fixed, repeating = match.groups()
    numerator = int((whole or "0") + fixed + repeating) - int((whole or "0") + fixed)
    denominator = int("9" * len(repeating) + "0" * len(fixed))
    return f"{sign}\\frac{{{numerator}}}{{{denominator}}}"


def number_base(text: str) -> str | None:
    """The base of a numeral written with one (`4210_{5}` -> `5`), else None."""
    match = re.fullmatch(r"\s*[0-9A-Za-z]+\s*_\s*\{?\s*(\d+)\s*\}?\s*", text)
    return match.group(1) if match else None


def condition_of(text: str) -> str:
    """The condition `drop_conditions` would drop (`where a = 1` of `f(x) = ax \\text{ where } a = 1`), or ''."""
    if drop_conditions(text) == text:
        return ""
    unwrapped = _PER_CASE.sub(lambda match: " " + match.group(0), _UNWRAP.sub(r" \1 ", text))
    found = re.search(rf"\b{_CONDITION_WORDS}\b.*$", unwrapped, re.IGNORECASE | re.DOTALL)
    return found.group(0) if found else ""


_TIME = re.compile(
    r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(?:\\(?:text|mathrm)\s*\{\s*([ap])\.?\s*m\.?\s*\}|([ap])\.?\s*m\.?)?\s*$",
    re.IGNORECASE,
)


def minutes_of_day(text: str) -> float | None:
    """`9:15 p.m.` -> 1275.0, `21:15:30` -> 1275.5; None when the text is not a time of day."""
    match = _TIME.match(re.sub(r"\\[,;:! ]", " ", text))
    if not match:
        return None
    hours, minutes, seconds = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    meridiem = (match.group(4) or match.group(5) or "").lower()
    if minutes > 59 or seconds > 59 or hours > (12 if meridiem else 24):
        return None
    if meridiem:
        hours = hours % 12 + (12 if meridiem == "p" else 0)
    return hours * 60 + minutes + seconds / 60


def expand_plus_minus(text: str) -> str:
    """`1, \\frac{3 \\pm \\sqrt{21}}{2}` -> `1, \\frac{3 + \\sqrt{21}}{2}, \\frac{3 - \\sqrt{21}}{2}`: each
    top-level part with one `\\pm` becomes its two values (a list of solutions)."""
    if "\\pm" not in text:
        return text
    parts = split_top_level(text)
    expanded = []
    for part in parts:
        if part.count("\\pm") == 1 and "\\mp" not in part:
            expanded += [part.replace("\\pm", "+"), part.replace("\\pm", "-")]
        else:
            expanded.append(part)
    return ", ".join(expanded)


def rewrite_mixed_number(text: str) -> str:
    """`2 3/4` -> `2+3/4` (a whole number, a space, a proper fraction), else unchanged."""
    match = re.fullmatch(r"\s*(-?)(\d+)\s+(\d+)\s*/\s*(\d+)\s*", text)
    if not match or int(match.group(3)) >= int(match.group(4)):
        return text
    sign, whole, numerator, denominator = match.groups()
    return f"{sign}({whole}+{numerator}/{denominator})"


def drop_trailing_words(text: str) -> str:
    """`10 weeks`, `10weeks`, `\\text{12th grade}` -> the number: a number (or an ordinal) followed by plain
    words only (units, nouns)."""
    unwrapped = _UNWRAP.sub(r" \1 ", text)
    match = re.fullmatch(r"\s*(-?\d[\d,]*(?:\.\d+)?)\s*([a-zA-Z]{3,}(?:\s+[a-zA-Z]+)*)\s*", unwrapped)
    ordinal = re.fullmatch(r"\s*(\d+)\s*(?:\^\s*\{?\s*)?(?:st|nd|rd|th)\}?(?:\s+[a-zA-Z]+)*\s*", unwrapped)
    return (match or ordinal).group(1) if match or ordinal else text


_CHOICE = r"\s*(?:\\text(?:bf|rm)?\s*\{\s*)?\(\s*([A-E])\s*\)"


def choice_letter(text: str, alone: bool) -> str | None:
    """The letter of a multiple-choice answer: `B`, `(B)`, `\\text{(B)}` (alone), or `(B) 12`,
    `\\textbf{(B)}\\ 12` (a choice with its value, when not `alone`)."""
    bare = re.fullmatch(r"\s*(?:\\text(?:bf|rm)?\s*\{\s*)?\(?\s*([A-E])\s*\)?\s*\}?\s*", text)
    if bare or alone:
        return bare.group(1) if bare else None
    lead = re.match(_CHOICE, text)
    return lead.group(1) if lead else None


_UNICODE_MATH = {"−": "-", "×": "\\times ", "·": "\\cdot ", "π": "\\pi ", "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge "}
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")


def ascii_math(text: str) -> str:
    """Unicode math as LaTeX: `x² − 2x` -> `x^{2} - 2x`, `3√13` -> `3\\sqrt{13}`, `2π` -> `2\\pi`."""
    if text.isascii():
        return text
    text = re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+", lambda match: "^{" + match.group(0).translate(_SUPERSCRIPTS) + "}", text)
    text = re.sub(r"√\s*(\d+|[a-zA-Z])", r"\\sqrt{\1}", text).replace("√", "\\sqrt")
    for character, latex in _UNICODE_MATH.items():
        text = text.replace(character, latex)
    return text


_QUALIFIER = r"(?:\\approx|\\sim|\\simeq|about|approximately|approx\.?|roughly|around|nearly)"
_QUANTITY = r"[+-]?\d[\d,]*(?:\.\d+)?(?:\s*(?:\\times|\\cdot|x)\s*10\s*\^\s*\{?\s*[+-]?\d+\s*\}?|[eE][+-]?\d+)?"
_UNIT_SYMBOL = (
    r"(?:(?:[kcmunpfMGT]|\\mu\s*)?(?:m|s|g|K|J|N|W|V|A|C|F|T|Hz|eV|Pa|L|mol|erg|pc|AU|au|yr|yrs|ly|bar|atm|cal|"
    r"rad|sr|dyn|Jy|min|hr|h|arcsec|arcmin|Å|\\AA)|[MLR]\s*_\s*\{?\s*\\odot\s*\}?|\^\s*\{?\s*\\circ\s*\}?\s*[CFK]?)"
)
_UNIT_PIECE = rf"(?:{_UNIT_SYMBOL}|(?:\\mu\s*)?\\(?:text|mathrm|rm|textrm|mbox)\s*\{{[^{{}}\d]*\}})(?:\s*\^\s*\{{?\s*-?\d+\s*\}}?)?"
_NUMBER_WITH_UNIT = re.compile(
    rf"\s*(?:(?:\\text\s*\{{\s*)?{_QUALIFIER}(?:\s*\}})?\s*)?({_QUANTITY})"
    rf"((?:\s|\\[,;: ]|~)*{_UNIT_PIECE}(?:(?:\s|\\[,;: ]|~|/|\\cdot|\*)*{_UNIT_PIECE})*)?\s*\.?\s*"
)


def number_with_unit(text: str) -> tuple[str, str] | None:
    """`1.6 \\, \\mathrm{K}` -> (`1.6`, `K`), `\\text{about } 3 \\times 10^{5} nm` -> (`3 \\times 10^{5}`, `nm`),
    `1.6` -> None: a number with a unit (known unit symbols, or any wrapped unit text) or a qualifier."""
    match = _NUMBER_WITH_UNIT.fullmatch(text)
    if not match or (match.group(2) is None and not re.search(_QUALIFIER, text)):
        return None
    unit = _UNWRAP.sub(r"\1", match.group(2) or "")
    return match.group(1).strip(), re.sub(r"\s|\\[,;: ]|~|\{|\}", "", unit)


_NAME = r"(?:\{\s*([a-zA-Z]|\\[a-zA-Z]+)\s*\}|([a-zA-Z]|\\[a-zA-Z]+))"
_SUBSCRIPT = r"(?:\s*_\s*(?:\{\s*(\w+)\s*\}|(\w)))?"
_VARIABLE = _NAME + _SUBSCRIPT
_DERIVATIVE_FORMS = (
    (
        2,
        re.compile(
            rf"\\frac\s*\{{\s*d\s*\^\s*\{{?\s*2\s*\}}?\s*{_VARIABLE}\s*\}}\s*\{{\s*d\s*t\s*\^\s*\{{?\s*2\s*\}}?\s*\}}"
        ),
    ),
    (1, re.compile(rf"\\frac\s*\{{\s*d\s*{_VARIABLE}\s*\}}\s*\{{\s*d\s*t\s*\}}")),
    (2, re.compile(rf"\\ddot\s*{_VARIABLE}")),
    (1, re.compile(rf"\\dot\s*{_VARIABLE}")),
    (1, re.compile(r"(?<![\\a-zA-Z])()([a-zA-Z])()()\s*(?:'|\^\s*\{\s*\\prime\s*\}|\^\s*\\prime)(?!')")),
)


def _derivative_name(match: re.Match, order: int) -> str:
    name, subscript = match.group(1) or match.group(2), match.group(3) or match.group(4)
    return f"\\{'d' * order}ot{{{name}}}" + (f"_{{{subscript}}}" if subscript else "")


def unify_derivatives(text: str) -> str:
    """Time derivatives in dot, prime or Leibniz notation -> dot notation (`\\frac{d x_0}{dt}` ->
    `\\dot{x}_{0}`, `\\frac{d^2 v}{dt^2}` -> `\\ddot{v}`), which math-verify reads as one name."""
    for order, pattern in _DERIVATIVE_FORMS:
        text = pattern.sub(lambda m, order=order: _derivative_name(m, order), text)
    return text


def unify_subscripts(text: str) -> str:
    """`V0` -> `V_{0}` (math-verify reads `V_0` and `V_{0}` alike): a letter followed by digits is
    a subscripted name; `\\lambda_{\\text{red}}` -> `\\lambda_{red}`."""
    text = re.sub(r"_\s*\{\s*\\(?:text|mathrm|rm)\s*\{\s*([^{}]*?)\s*\}\s*\}", r"_{\1}", text)  # `_{\text{red}}`
    text = re.sub(r"(?<![\\a-zA-Z_\d.])([a-zA-Z])(\d+)(?![\d.])", r"\1_{\2}", text)  # not `7.26e6`
    return re.sub(r"_\s*([a-zA-Z0-9])(?![\w{])", r"_{\1}", text)  # `E_1` -> `E_{1}`


_COLUMN = re.compile(r"\\begin\{([pbv]?matrix)\}(.*?)\\end\{\1\}", re.DOTALL)


def vector_as_tuple(text: str) -> str:
    """A one-column matrix, `\\langle a, b\\rangle`, or `a\\mathbf{i}+b\\mathbf{j}+c\\mathbf{k}` -> `(a, b, c)`."""
    stripped = text.strip()
    stripped = re.sub(r"^\\left\s*\(|\\right\s*\)$", lambda m: "(" if "(" in m.group(0) else ")", stripped)
    if stripped.startswith("(") and stripped.endswith(")") and stripped.count("\\begin") == 1:
        stripped = stripped[1:-1].strip()
    column = _COLUMN.fullmatch(stripped)
    if column and "&" not in column.group(2):
        entries = [entry.strip() for entry in re.split(r"\\\\", column.group(2)) if entry.strip()]
        return f"({', '.join(entries)})"
    angle = re.fullmatch(r"(?:\\left)?\s*\\langle(.*?)(?:\\right)?\s*\\rangle", stripped)
    if angle:
        return f"({angle.group(1).strip()})"
    units = re.findall(r"([+-]?[^+\-]*?)\s*\\(?:mathbf|hat|vec)\s*\{?\s*([ijk])\s*\}?", stripped)
    if units and re.sub(r"[+-]?[^+\-]*?\s*\\(?:mathbf|hat|vec)\s*\{?\s*[ijk]\s*\}?", "", stripped).strip() == "":
        parts = {axis: (coefficient.replace(" ", "") or "1") for coefficient, axis in units}
        parts = {axis: ("-1" if c == "-" else "1" if c == "+" else c.lstrip("+")) for axis, c in parts.items()}
        if set(parts) == {"i", "j", "k"} or set(parts) == {"i", "j"}:
            return f"({', '.join(parts[axis] for axis in 'ijk' if axis in parts)})"
    return text


def is_vector(text: str) -> bool:
    return vector_as_tuple(text) != text


_DECIMAL = re.compile(
    r"^\s*[+-]?(\d+)(?:\.(\d*))?\s*(?:(?:[eE]|\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*)\{?\s*([+-]?\d+)\s*\}?)?\s*$"
)


def stated_precision(gold: str) -> float | None:
    """Half a unit in the last stated place of a decimal gold (`27.39` -> 0.005, `1.70e4` -> 50).

    None for exact golds: integers, fractions, surds, and powers of ten without a mantissa point
    written with an exponent are compared exactly (they state no rounding).
    """
    text = _UNWRAP.sub("", gold).replace("~", " ")
    text = re.sub(r"\\[,;! ]|\\mathrm\{[^{}]*\}|\^\s*\\circ|\\%|%", " ", text).strip()
    match = _DECIMAL.match(text)
    if not match:
        return None
    integer, decimals, exponent = match.groups()
    if decimals is None and exponent is None:
        return None
    places = len(decimals or "")
    return 0.5 * 10 ** (int(exponent or 0) - places)


def rounded_integer_precision(gold: str) -> float | None:
    """Half a unit in the last nonzero digit of an integer gold that ends in zeros and has at least 3
    significant figures (`6630` -> 5): the precision a rounded measurement states. Only a prediction
    with decimals is held to it (`6630.65` = `6630`); integers stay exact (`6631` != `6630`)."""
    match = re.fullmatch(r"\s*[+-]?(\d*[1-9])(0+)\s*", _UNWRAP.sub("", gold))
    if not match or len(match.group(1)) < 3:
        return None
    return 0.5 * 10 ** len(match.group(2))


def decimal_places(text: str) -> tuple[int, int] | None:
    """(significant figures, power of ten of the last stated place) of a plain decimal (`2.6667` ->
    (5, -4), `2.3148e-3` -> (5, -7)); None for integers, fractions and anything else."""
    match = _DECIMAL.match(re.sub(r"\\[,;! ]|~", " ", _UNWRAP.sub("", text)))
    if not match or not match.group(2):
        return None
    integer, decimals, exponent = match.groups()
    digits = (integer + decimals).lstrip("0")
    return len(digits), int(exponent or 0) - len(decimals)


def within_stated_precision(pred_value: float, gold_value: float, half_unit: float) -> bool:
    """Whether a prediction rounds to the gold at the gold's last stated place (at most 1% off)."""
    tolerance = min(half_unit, 0.01 * abs(gold_value)) if gold_value else half_unit
    return math.isclose(pred_value, gold_value, rel_tol=1e-12) or abs(pred_value - gold_value) <= tolerance * (1 + 1e-9)
