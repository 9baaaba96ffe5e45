"""`train.data` as files or datasets: every source converted to SFT records in the chosen format,
mixed by weight, with a per-source report (layout, thought formats, counts) beside the training."""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

from sky_distill.data_sources.layouts import Sample
from sky_distill.data_sources.samples import SourceReport, iter_samples
from sky_distill.data_sources.sources import DataSource, parse_sources
from sky_distill.errors import SkyDistillError
from sky_distill.records import JsonlWriter, Message, SFTExample
from sky_distill.runs import write_json_atomic
from sky_distill.verify.sft import SFT_SCHEMA_VERSION, format_assistant, split_thinking

log = logging.getLogger(__name__)
REPORT_FILE = "data_sources.json"
RUN_DATA = ("verified", "all")


class NoExternalDataError(SkyDistillError, ValueError):
    """A source that yielded no training example."""


def is_external(data: Any) -> bool:
    """Whether `train.data` names files or datasets rather than this run's verified/all traces."""
    return not (isinstance(data, str) and data in RUN_DATA)


def sft_example(sample: Sample, source: str, index: int, style: str, extra: dict[str, Any]) -> SFTExample:
    """One sample as a chat record, its thinking written in `style` (raw keeps the response as written;
    a separate thinking channel is then put before it)."""
    thinking, answer = split_thinking(sample.response, sample.reasoning)
    raw = f"{sample.reasoning.strip()}\n\n{sample.response.strip()}" if sample.reasoning else sample.response
    content = format_assistant(thinking, answer, raw, style)
    messages = [Message(role=turn["role"], content=turn["content"]) for turn in sample.prompt]
    return SFTExample(
        messages=[*messages, Message(role="assistant", content=content)],
        problem_id=sample.row_id or f"{source}-{index}",
        sample_index=0,
        source=source,
        metadata={**extra, "format": style, "thinking_chars": len(thinking), "schema": SFT_SCHEMA_VERSION},
    )


def copies(weight: float, rng: random.Random) -> int:
    """How many times an example is written: the whole part of the weight, plus one with its fraction's chance."""
    whole = math.floor(weight)
    return whole + (rng.random() < weight - whole)


def write_source(source: DataSource, style: str, seed: int, path: Path) -> SourceReport:
    """Convert one source into an SFT JSONL file; the report says what became of every row."""
    report = SourceReport(name=source.label, origin=source.hub or source.path or "", weight=source.weight)
    rng = random.Random(f"{seed}:{source.label}")
    with JsonlWriter(path) as writer:
        for index, (where, line, sample, _) in enumerate(iter_samples(source, report)):
            if source.only_correct and sample.correct is False:
                report.dropped["marked_incorrect"] += 1
                continue
            if sample.truncated:
                report.dropped["truncated"] += 1
                continue
            extra = {"layout": report.layouts[where], "file": where, "line": line, "teacher": source.teacher}
            example = sft_example(sample, source.label, index, style, extra)
            for _ in range(copies(source.weight, rng)):
                writer.write(example)
                report.written += 1
    return report


def prepare_train_data(data: Any, style: str, seed: int, out_dir: str | Path) -> tuple[list[str], dict[str, Any]]:
    """SFT files from `train.data`'s sources in `out_dir`, and the report (also written to data_sources.json)."""
    sources = parse_sources(data)
    out_dir = Path(out_dir)
    files, reports = [], []
    for source in sources:
        path = out_dir / f"{source.label}.jsonl"
        report = write_source(source, style, seed, path)
        log.info("data source %s", report.summary_line())
        for error in report.errors:
            log.warning("bad row: %s", error)
        if report.written == 0:
            raise NoExternalDataError(
                f"data source {source.label} ({report.origin}) gave no training example: "
                f"{report.summary_line()}; {report.errors[:3]}"
            )
        files.append(str(path))
        reports.append(report.as_dict())
    summary = {"format": style, "seed": seed, "sources": reports}
    write_json_atomic(out_dir / REPORT_FILE, summary)
    return files, summary
