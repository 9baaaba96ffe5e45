"""Where external rows come from: local files (JSON array, JSON Lines, parquet; folders, globs) or a
Hub dataset (id, config, split, read through `datasets`), each a source with a mixing weight.

A source is written as a string (a path, folder, glob, or Hub id `owner/name`) or as a mapping:
`{path: ..., weight: 2}`, `{hub: owner/name, config: ..., split: train}`, plus optional `name`,
`layout` (default: detected), `fields` (the `fields` layout's mapping), `answer_type`, `teacher`.
Rows carry where they came from (file and line; for JSON arrays and parquet, the row number).
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from sky_distill.config import ConfigModel
from sky_distill.errors import SkyDistillError
from sky_distill.records import RecordError, iter_json_objects

SUFFIXES = (".jsonl", ".json", ".parquet")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GLOB_CHARS = set("*?[")


class SourceError(SkyDistillError, ValueError):
    """A source that names nothing readable."""


class DataSource(ConfigModel):
    """One external source of rows, with its mixing weight."""

    path: str | None = None
    hub: str | None = None
    config: str | None = None  # the Hub dataset's configuration (subset)
    split: str = "train"
    name: str | None = None  # names the source in reports; default: the file stem or Hub id
    weight: float = Field(default=1.0, gt=0)  # copies of each example (fractions drawn by the seed)
    layout: Literal["auto", "openr1_math", "s1k", "sharegpt", "openai_messages", "fields"] = "auto"
    fields: dict[str, str] = Field(default_factory=dict)  # `fields` layout: problem, response, answer, ... -> column
    answer_type: Literal["math", "code", "choice"] = "math"  # verify: how responses are checked
    teacher: str | None = None  # the model that wrote the traces, for reports and cards
    only_correct: bool = True  # train: layouts with correctness labels (OpenR1-Math) keep the correct ones

    @model_validator(mode="after")
    def _one_origin(self) -> DataSource:
        if bool(self.path) == bool(self.hub):
            raise ValueError("a data source needs exactly one of path or hub")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.hub:
            return self.hub.split("/")[-1]
        return Path(self.path.rstrip("/")).stem.replace("*", "") or "data"


def parse_sources(spec: Any, key: str = "train.data") -> list[DataSource]:
    """Sources from a string, a mapping, or a list of them; names are made unique."""
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise SourceError(f"{key}: an empty list of sources")
    sources = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]" if isinstance(spec, (list, tuple)) else key
        if isinstance(item, str):
            item = _from_string(item)
        if not isinstance(item, dict):
            raise SourceError(f"{where}: expected a path, a Hub id or a mapping, got {type(item).__name__}")
        try:
            sources.append(DataSource.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise SourceError(
                f"{where}{'.' + field if field else ''}: {first['msg'].removeprefix('Value error, ')}"
            ) from None
    seen: dict[str, int] = {}
    named = []
    for source in sources:
        label = source.label
        seen[label] = seen.get(label, 0) + 1
        named.append(source if seen[label] == 1 else source.model_copy(update={"name": f"{label}_{seen[label]}"}))
    return named


def _from_string(text: str) -> dict[str, Any]:
    """A path if it names files (or looks like one), else a Hub id `owner/name`."""
    if Path(text).exists() or GLOB_CHARS & set(text) or text.startswith((".", "/", "~")) or text.endswith(SUFFIXES):
        return {"path": text}
    if HUB_ID.match(text):
        return {"hub": text}
    return {"path": text}


def source_files(source: DataSource) -> list[Path]:
    """The files a local source names: a file, every data file under a folder, or a glob's matches."""
    text = str(Path(source.path).expanduser())
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    else:
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if p.endswith(SUFFIXES))
    if not files:
        raise SourceError(f"data source {source.path!r}: no {', '.join(SUFFIXES)} files there")
    return files


Row = tuple[str, int, "dict[str, Any] | RecordError"]


def iter_rows(source: DataSource) -> Iterator[Row]:
    """(where, line, row or `RecordError`) for every row of a source, in file order."""
    if source.hub:
        yield from _hub_rows(source)
        return
    for path in source_files(source):
        yield from file_rows(path)


def file_rows(path: str | Path) -> Iterator[Row]:
    """Rows of one JSON array, JSON Lines or parquet file."""
    path = Path(path)
    where = str(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=512):
            for row in batch.to_pylist():
                number += 1
                yield where, number, row
        return
    if path.suffix == ".json" and _starts_array(path):
        with open(path, encoding="utf-8") as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as error:
                yield where, error.lineno, RecordError(where, error.lineno, "<json>", f"not valid JSON ({error.msg})")
                return
        for number, row in enumerate(data, start=1):
            yield (
                where,
                number,
                row
                if isinstance(row, dict)
                else RecordError(where, number, "<json>", f"expected a JSON object, got {type(row).__name__}"),
            )
        return
    for number, row in iter_json_objects(path):  # .jsonl, or .json holding JSON Lines
        yield where, number, row


def _starts_array(path: Path) -> bool:
    with open(path, encoding="utf-8") as handle:
        while True:
            character = handle.read(1)
            if not character or not character.isspace():
                return character == "["


def _hub_rows(source: DataSource) -> Iterator[Row]:
    import datasets

    dataset = datasets.load_dataset(source.hub, source.config, split=source.split)
    where = f"hf://{source.hub}/{source.config or 'default'}/{source.split}"
    for number, row in enumerate(dataset, start=1):
        yield where, number, dict(row)


def describe(sources: Sequence[DataSource]) -> list[str]:
    return [f"{s.label}: {s.hub or s.path} (weight {s.weight:g})" for s in sources]
