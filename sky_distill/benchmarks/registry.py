"""The benchmark registry: one YAML definition per benchmark in `eval/benchmarks/`.

A definition says where the data lives (a Hub dataset and split, and the file name of a local
copy), how a row becomes a `Problem` (fields, answer type, builder), how it is scored, the
prompt, and the sampling defaults. `load_registry` validates every file and names the bad key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sky_distill.errors import SkyDistillError

REPO_EVAL_DIR = Path(__file__).resolve().parents[2] / "eval"
SCORER_FOR_ANSWER_TYPE = {"math": "math_verify", "choice": "choice_letter", "code": "code_tests"}
AnswerFrom = Literal["answer", "solution_hashes", "solution_boxed", "first_of_list"]


class UnknownBenchmarkError(SkyDistillError, KeyError):
    """A benchmark name that is neither in the registry nor the task's own held-out split."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BenchmarkDefinitionError(SkyDistillError, ValueError):
    """A registry file that is not a valid benchmark definition."""


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(Spec):
    """A dataset on the Hugging Face Hub (or, with `data_files`, JSON files read by `datasets`)."""

    dataset: str
    subset: str | None = None
    split: str = "test"
    revision: str | None = None
    data_files: list[str] | None = None  # for `dataset: json`; LiveCodeBench picks them by release
    fields: dict[str, str] = Field(default_factory=dict)  # record field -> column, or a "{column}" template
    answer_from: AnswerFrom = "answer"
    gated: bool = False  # needs accepted terms and a token (GPQA)


class LocalSource(Spec):
    """A local JSONL copy, found by file name in `paths.benchmarks_dir`."""

    file: str
    fields: dict[str, str] = Field(default_factory=dict)
    answer_from: AnswerFrom = "answer"


class SamplingDefaults(Spec):
    n: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=32768, gt=0)


class BenchmarkSpec(Spec):
    """One benchmark: data, scoring, prompt and sampling defaults."""

    name: str = Field(min_length=1)
    title: str
    description: str = ""
    homepage: str | None = None
    citation: str | None = None
    license: str | None = None
    answer_type: Literal["math", "choice", "code"]
    scorer: Literal["math_verify", "choice_letter", "code_tests"]
    builder: Literal["plain", "multiple_choice", "humaneval", "mbpp", "leetcode", "livecodebench"] = "plain"
    hub: HubSource | None = None
    local: LocalSource | None = None
    prompt_template: str
    sampling: SamplingDefaults = SamplingDefaults()
    metadata_fields: list[str] = Field(default_factory=list)  # row columns kept in Problem.metadata
    group_by: str | None = None  # a metadata field scores are also broken down by
    date_field: str | None = None  # a column holding the problem's date (ISO text or epoch seconds)
    date_from: str | None = None
    date_to: str | None = None
    releases: dict[str, list[str]] = Field(default_factory=dict)  # release tag -> data files
    release: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)  # per-response check timeout

    @model_validator(mode="after")
    def _consistent(self) -> BenchmarkSpec:
        if SCORER_FOR_ANSWER_TYPE[self.answer_type] != self.scorer:
            raise ValueError(
                f"scorer {self.scorer!r} does not score answer_type {self.answer_type!r} "
                f"(use {SCORER_FOR_ANSWER_TYPE[self.answer_type]!r})"
            )
        if self.hub is None and self.local is None:
            raise ValueError("a benchmark needs a hub source, a local file, or both")
        if "{problem}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{problem}'")
        if self.release is not None and self.release not in self.releases:
            raise ValueError(f"release {self.release!r} is not one of releases: {sorted(self.releases)}")
        if self.group_by and self.group_by not in self.metadata_fields:
            raise ValueError(f"group_by {self.group_by!r} must be one of metadata_fields")
        return self

    def with_options(self, **changes: Any) -> BenchmarkSpec:
        """A copy with run-time options applied (None leaves a value as defined), re-validated."""
        data = self.model_dump()
        for key, value in changes.items():
            if value is None:
                continue
            if key == "sampling":
                data["sampling"] = {**data["sampling"], **value}
            else:
                data[key] = value
        return BenchmarkSpec.model_validate(data)


def read_definition(path: Path) -> BenchmarkSpec:
    """Validate one definition file; the error names the file and every bad key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise BenchmarkDefinitionError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise BenchmarkDefinitionError(f"{path}: expected a mapping of keys")
    try:
        spec = BenchmarkSpec.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in detail['loc']) or '<definition>'}: {detail['msg'].removeprefix('Value error, ')}"
            for detail in error.errors()
        ]
        raise BenchmarkDefinitionError(f"{path}: " + "; ".join(problems)) from error
    if spec.name != path.stem:
        raise BenchmarkDefinitionError(f"{path}: name {spec.name!r} must match the file name {path.stem!r}")
    return spec


def load_registry(eval_dir: str | Path | None = None) -> dict[str, BenchmarkSpec]:
    """Every definition in `<eval_dir>/benchmarks/*.yaml`, by name."""
    root = Path(eval_dir) if eval_dir else REPO_EVAL_DIR
    directory = root / "benchmarks"
    if not directory.is_dir():
        raise BenchmarkDefinitionError(f"no benchmark definitions in {directory}")
    return {path.stem: read_definition(path) for path in sorted(directory.glob("*.yaml"))}


def unknown_benchmark(name: str, available: list[str]) -> UnknownBenchmarkError:
    close = difflib.get_close_matches(name, available, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return UnknownBenchmarkError(f"unknown benchmark {name!r}{hint} Available: {', '.join(sorted(available))}")
