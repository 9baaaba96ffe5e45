"""A source's rows as samples: the layout detected per file, bad rows counted and named, nothing dropped
silently. The first row of a file that fits no layout stops the run with file, line and fields found."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sky_distill.data_sources.layouts import (
    LayoutError,
    Sample,
    detect_layout,
    row_samples,
    thought_markers,
    unknown_layout,
)
from sky_distill.data_sources.sources import DataSource, iter_rows
from sky_distill.errors import SkyDistillError
from sky_distill.records import RecordError

MAX_REPORTED = 20


class UnknownLayoutError(SkyDistillError, ValueError):
    """A file whose first row fits no known layout."""


@dataclass
class SourceReport:
    """What one source held: its layout(s), thought formats, rows, samples, and every bad row counted."""

    name: str
    origin: str
    weight: float
    layouts: dict[str, str] = field(default_factory=dict)  # file -> layout
    thought_formats: Counter = field(default_factory=Counter)
    rows: int = 0
    samples: int = 0
    bad_rows: int = 0
    errors: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # reason -> samples not written
    written: int = 0  # examples written (after the mixing weight)

    def bad(self, error: RecordError | str) -> None:
        self.bad_rows += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(str(error))

    @property
    def layout(self) -> str:
        names = sorted(set(self.layouts.values()))
        return names[0] if len(names) == 1 else "+".join(names)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "weight": self.weight,
            "layout": self.layout,
            "layouts": self.layouts,
            "thought_formats": dict(self.thought_formats),
            "rows": self.rows,
            "samples": self.samples,
            "bad_rows": self.bad_rows,
            "errors": self.errors,
            "dropped": dict(self.dropped),
            "written": self.written,
        }

    def summary_line(self) -> str:
        thoughts = ", ".join(f"{name} {count}" for name, count in sorted(self.thought_formats.items()))
        dropped = "".join(f", {count} {reason}" for reason, count in sorted(self.dropped.items()))
        return (
            f"{self.name} ({self.origin}): layout {self.layout}, thoughts: {thoughts or 'none'}; {self.rows} rows, "
            f"{self.samples} samples, {self.bad_rows} bad rows{dropped}; {self.written} written (weight {self.weight:g})"
        )


def iter_samples(source: DataSource, report: SourceReport) -> Iterator[tuple[str, int, Sample, dict[str, Any]]]:
    """(where, line, sample, row) for every sample of a source; bad rows go to the report."""
    for where, line, row in iter_rows(source):
        report.rows += 1
        if isinstance(row, RecordError):
            report.bad(row)
            continue
        layout = report.layouts.get(where)
        if layout is None:
            layout = source.layout if source.layout != "auto" else detect_layout(row, source.fields)
            if layout is None:
                raise UnknownLayoutError(str(unknown_layout(row, (where, line))))
            report.layouts[where] = layout
        try:
            samples = row_samples(row, layout, (where, line), source.fields)
        except LayoutError as error:
            report.bad(error.error)
            continue
        for sample in samples:
            report.samples += 1
            report.thought_formats["separate_channel" if sample.reasoning else thought_markers(sample.response)] += 1
            yield where, line, sample, row
