"""`verify.traces`: an external trace set (problem, response, gold answer or tests) as the verify
stage's inputs, so it is judged and curated like a generation: the same verifier, policies, dedup,
decontamination, SFT files and report (acceptance by source included)."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from sky_distill.data_sources.layouts import Sample, thought_markers
from sky_distill.data_sources.samples import SourceReport, iter_samples
from sky_distill.data_sources.sources import DataSource, parse_sources
from sky_distill.errors import MissingInputError
from sky_distill.generate.thoughts import split_thought
from sky_distill.records import JsonlWriter, Message, Problem, Trace
from sky_distill.runs import completion

log = logging.getLogger(__name__)
EXTERNAL_DIR = "external"
MODEL_COLUMNS = ("model", "source_model", "teacher", "generator")


def problem_id(source: str, text: str) -> str:
    """The same problem text in a source always gets the same id (its samples group together)."""
    return f"{source}-{hashlib.sha1(text.strip().encode('utf-8')).hexdigest()[:12]}"


def gold_answer(sample: Sample, answer_type: str) -> str:
    """The gold answer; a worked solution gives its last \\boxed{} (math)."""
    if answer_type == "math" and "\\boxed" in sample.answer:
        from sky_distill.verify.math import last_boxed

        return last_boxed(sample.answer) or sample.answer
    return sample.answer


def is_cut(sample: Sample) -> bool:
    """Marked truncated by the set, or its thinking opened and never closed."""
    style = thought_markers(sample.response)
    if sample.truncated:
        return True
    if style == "none" and "<|begin_of_thought|>" not in sample.response:
        return False
    return not split_thought(sample.response, None, style if style != "none" else "sky_t1").closed


def to_trace(sample: Sample, source: DataSource, label: str, pid: str, index: int, row: dict[str, Any]) -> Trace:
    model = source.teacher or next((str(row[c]) for c in MODEL_COLUMNS if isinstance(row.get(c), str)), "unknown")
    cut = is_cut(sample)
    return Trace(
        problem_id=pid,
        sample_index=index,
        source=label,
        messages=[Message(**turn) for turn in sample.prompt],
        response=sample.response,
        reasoning=sample.reasoning,
        model=model,
        engine="external",
        engine_version=source.hub or source.path or "",
        sampling={"external": "not recorded by the source set", "completion_tokens": "whitespace-separated words"},
        prompt_tokens=0,
        completion_tokens=len(((sample.reasoning or "") + " " + sample.response).split()),
        finish_reason="length" if cut else "stop",
        truncated=cut,
        thought_format="reasoning_field" if sample.reasoning else thought_markers(sample.response),
    )


def write_external_traces(spec: Any, out_dir: str | Path) -> tuple[Path, Path, dict[str, Any]]:
    """traces.jsonl and problems.jsonl in `out_dir` from the sources of `verify.traces`, and their report."""
    out_dir = Path(out_dir)
    sources = parse_sources(spec, "verify.traces")
    reports: list[SourceReport] = []
    seen: dict[str, str] = {}
    sample_counts: Counter = Counter()
    with JsonlWriter(out_dir / "traces.jsonl") as traces, JsonlWriter(out_dir / "problems.jsonl") as problems:
        for source in sources:
            report = SourceReport(name=source.label, origin=source.hub or source.path or "", weight=source.weight)
            for _, _, sample, row in iter_samples(source, report):
                sub = row.get("source") if isinstance(row.get("source"), str) else None
                label = f"{source.label}/{sub}" if sub else source.label
                pid = problem_id(source.label, sample.problem)
                if pid not in seen:
                    seen[pid] = label
                    answer = gold_answer(sample, source.answer_type)
                    problems.write(
                        Problem(
                            id=pid,
                            problem=sample.problem,
                            answer=answer,
                            source=label,
                            answer_type=source.answer_type,
                            tests=sample.tests,
                            metadata={"row_id": sample.row_id},
                        )
                    )
                traces.write(to_trace(sample, source, label, pid, sample_counts[pid], row))
                sample_counts[pid] += 1
                report.written += 1
            log.info("external traces %s", report.summary_line())
            reports.append(report)
    summary = {"sources": [report.as_dict() for report in reports], "problems": len(seen)}
    return out_dir / "traces.jsonl", out_dir / "problems.jsonl", summary


def trace_inputs(spec: Any, run_dir: str | Path) -> tuple[Path, Path, dict[str, Any]]:
    """(traces, problems, report) the verify stage reads: this run's generation, or `verify.traces`."""
    run_dir = Path(run_dir)
    if spec:
        return write_external_traces(spec, run_dir / "verify" / EXTERNAL_DIR)
    generate_dir = run_dir / "generate"
    if completion(generate_dir) is None:
        raise MissingInputError(
            f"no complete generation in {generate_dir}; run `sky-distill generate` (and merge shards) first, "
            "or set verify.traces to judge an external trace set"
        )
    return generate_dir / "traces.jsonl", generate_dir / "problems.jsonl", {}
