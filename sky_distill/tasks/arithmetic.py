"""The synthetic reasoning task of the demo: multi-digit addition worked column by column.

Problems are drawn deterministically from a seed. Each has a reference step-by-step solution
(what the tiny teacher is bootstrapped on) and a direct answer (what the base student knows),
and a gold answer that the math verifier checks. The train and test splits never share a pair.

A reference solution can also carry a systematic slip: a carry that is dropped (written as 0
in the next column), with the answer read off the slipped columns, so the trace is fluent,
internally consistent and wrong. A teacher bootstrapped on such solutions makes the same kind
of mistake at a stable rate, the way a real teacher's misconceptions recur, rather than
failing at random wherever its training happened to stop.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from sky_distill.records import Problem

SOURCE = "arithmetic"
SPLITS = ("train", "test")
TEST_FRACTION_INVERSE = 8  # one pair in eight is held out


@dataclass(frozen=True)
class ArithmeticSpec:
    """Which sums to draw: operands with between `min_digits` and `max_digits` digits."""

    min_digits: int = 2
    max_digits: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {self.min_digits}, {self.max_digits}")


def problem_text(a: int, b: int) -> str:
    return f"Compute {a} + {b}."


def worked_solution(a: int, b: int, dropped: frozenset[int] = frozenset()) -> str:
    """Column addition from the ones digit up, one `x+y+carry=sum` line per column.

    A column in `dropped` loses its carry (the next column adds 0); the answer is then read off
    the columns as written (each sum's last digit, and a final carry only if it was kept).
    """
    digits_a, digits_b = str(a)[::-1], str(b)[::-1]
    lines, carry, answer = [], 0, 0
    width = max(len(digits_a), len(digits_b))
    for column in range(width):
        x = int(digits_a[column]) if column < len(digits_a) else 0
        y = int(digits_b[column]) if column < len(digits_b) else 0
        total = x + y + carry
        lines.append(f"{x}+{y}+{carry}={total}")
        answer += (total % 10) * 10**column
        carry = 0 if column in dropped else total // 10
    answer += carry * 10**width
    steps = "\n".join(lines)
    return f"<think>\n{steps}\n</think>\nThe answer is \\boxed{{{answer}}}."


def slipped_columns(a: int, b: int, slip_rate: float, rng: random.Random) -> frozenset[int]:
    """Each carrying column drops its carry with probability `slip_rate` (walked in column order)."""
    dropped: set[int] = set()
    carry = 0
    digits_a, digits_b = str(a)[::-1], str(b)[::-1]
    for column in range(max(len(digits_a), len(digits_b))):
        x = int(digits_a[column]) if column < len(digits_a) else 0
        y = int(digits_b[column]) if column < len(digits_b) else 0
        carry = (x + y + carry) // 10
        if carry and rng.random() < slip_rate:
            dropped.add(column)
            carry = 0
    return frozenset(dropped)


def direct_solution(a: int, b: int) -> str:
    """The answer alone, as a model that never learned to reason step by step would write it."""
    return f"The answer is \\boxed{{{a + b}}}."


def _draw_operand(rng: random.Random, spec: ArithmeticSpec) -> int:
    digits = rng.randint(spec.min_digits, spec.max_digits)
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def split_of(a: int, b: int) -> str:
    """Every pair belongs to exactly one split, by a stable hash, so splits never overlap."""
    digest = hashlib.blake2b(f"{a}+{b}".encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") % TEST_FRACTION_INVERSE == 0 else "train"


def _pairs(spec: ArithmeticSpec, split: str, count: int) -> list[tuple[int, int]]:
    rng = random.Random(f"{spec.seed}-{split}")
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(200 * count + 1000):
        if len(pairs) == count:
            return pairs
        pair = (_draw_operand(rng, spec), _draw_operand(rng, spec))
        if pair not in seen and split_of(*pair) == split:
            seen.add(pair)
            pairs.append(pair)
    if len(pairs) == count:
        return pairs
    raise ValueError(f"cannot draw {count} distinct {split} problems from {spec}; widen the digit range")


def make_problems(spec: ArithmeticSpec, split: str, count: int) -> list[Problem]:
    """The first `count` problems of `split`, the same for the same spec and seed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [
        Problem(
            id=f"{SOURCE}-{split}-{index:06d}",
            problem=problem_text(a, b),
            answer=str(a + b),
            source=SOURCE,
            answer_type="math",
            metadata={"a": a, "b": b, "digits": max(len(str(a)), len(str(b)))},
        )
        for index, (a, b) in enumerate(_pairs(spec, split, count))
    ]


def reference_response(problem: Problem, style: str, carry_slip: float = 0.0, seed: int = 0) -> str:
    """The reference response for a generated problem: `worked` (step by step) or `direct`.

    With `carry_slip` > 0 a worked solution drops each carry with that probability, drawn
    from (seed, problem id), so the same problems always get the same slips.
    """
    a, b = problem.metadata["a"], problem.metadata["b"]
    if style == "worked":
        dropped = (
            slipped_columns(a, b, carry_slip, random.Random(f"{seed}-{problem.id}-slip")) if carry_slip else frozenset()
        )
        return worked_solution(a, b, dropped)
    if style == "direct":
        return direct_solution(a, b)
    raise ValueError(f"style must be 'worked' or 'direct', got {style!r}")
