"""`sky-distill verify`: judge every trace, curate the correct ones, write SFT data and a report.

Everything streams: traces flow through the verifier workers into `verdicts.jsonl`, then the
traces and their verdicts are read back one problem at a time for curation, the SFT files and
the report. What is held across the whole run is per problem and small (byte offsets, ids of
excluded problems, MinHash signatures for near-duplicate search), never the traces or their text.

Inputs: `<run_dir>/generate/{traces,problems}.jsonl`. Outputs in `<run_dir>/verify/`:
`verdicts.jsonl`, `sft/verified.jsonl` (kept by the policy), `sft/all.jsonl` (the same filters,
no correctness check: the no-verification ablation), `report.json` and `COMPLETE.json`.
Verdicts are appended to `verdicts.partial.jsonl` as they come, so a killed run resumes there.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sky_distill.config import stage_config, to_container
from sky_distill.data_sources.verify_inputs import trace_inputs
from sky_distill.records import JsonlWriter, RecordError, Trace, iter_jsonl_offsets
from sky_distill.runs import (
    fingerprint_files,
    mark_complete,
    provenance,
    write_json_atomic,
)
from sky_distill.settings_guard import changed_keys, record_settings, recorded_settings
from sky_distill.verify.batch import iter_verdicts
from sky_distill.verify.checks import VERIFIER_VERSION
from sky_distill.verify.curation import ProblemFile, problem_exclusions, problem_groups
from sky_distill.verify.dedup import exact_duplicate_traces
from sky_distill.verify.report import CurationTally
from sky_distill.verify.sandbox import require_containment
from sky_distill.verify.select import TraceFilter, filter_traces, select_traces
from sky_distill.verify.sft import to_sft_example

log = logging.getLogger(__name__)

PARTIAL = "verdicts.partial.jsonl"
PARTIAL_SETTINGS = "verdicts.partial.settings.json"


def _prepare_progress(stage_dir: Path, settings: dict[str, Any]) -> Path:
    """The partial verdicts file, emptied when it was written under other settings.

    The one settings rule, but not its refusal: partial verdicts are a cache of checks, and the
    stage rewrites every output, so checking again cannot mix results (generate and eval refuse)."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    partial, marker = stage_dir / PARTIAL, stage_dir / PARTIAL_SETTINGS
    changes = changed_keys(recorded_settings(marker) or {}, settings)
    if partial.exists() and changes:
        log.warning("verify: %s was written under other settings (%s); checking every trace again", partial, changes)
        partial.unlink()
    record_settings(marker, settings)
    return partial


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "verify")
    config, paths = typed["verify"], typed["paths"]
    stage_dir = Path(paths.run_dir) / "verify"
    # this run's generation, or an external trace set (verify.traces; README, Bring your own data)
    traces_path, problems_path, external = trace_inputs(config.traces, paths.run_dir)
    started = time.monotonic()
    problems = ProblemFile(problems_path)

    # Verification: the traces stream through the workers; verdicts stream to their file.
    code = config.sandbox
    sandbox = None
    if "code" in problems.answer_types:
        sandbox = require_containment(code.backend, code.site_packages)  # fail closed before any code runs
    settings = {"verifier_version": VERIFIER_VERSION, "timeout_s": config.timeout_s, "code": code.model_dump()}
    progress = _prepare_progress(stage_dir, settings)
    trace_errors: list[RecordError] = []
    order = {"previous": ("", -1), "sorted": True, "count": 0}

    def items() -> Iterator[tuple[str, int, str]]:
        for _, _, trace in iter_jsonl_offsets(traces_path, Trace):
            if isinstance(trace, RecordError):
                trace_errors.append(trace)
                continue
            order["sorted"] = order["sorted"] and trace.key >= order["previous"]
            order["previous"] = trace.key
            order["count"] += 1
            yield trace.problem_id, trace.sample_index, trace.response

    with JsonlWriter(stage_dir / "verdicts.jsonl") as verdict_file:
        for verdict in iter_verdicts(items(), problems.get, config.timeout_s, config.workers, code, progress):
            verdict_file.write(verdict)
    for error in [*trace_errors, *problems.errors]:
        log.warning("unreadable record: %s", error)
    verified_s = time.monotonic() - started

    # Curation, one problem at a time: filters, the policy, the SFT files and the report.
    contaminated, near, filtering = problem_exclusions(problems.texts(), config, paths.benchmarks_dir)
    excluded = frozenset(contaminated) | frozenset(near)
    tally = CurationTally()
    dropped: Counter = Counter()
    all_examples = 0
    run_name = Path(paths.run_dir).name
    sft = config.sft
    groups = problem_groups(traces_path, stage_dir / "verdicts.jsonl", bool(order["sorted"]))
    with (
        JsonlWriter(stage_dir / "sft" / "verified.jsonl") as verified,
        JsonlWriter(stage_dir / "sft" / "all.jsonl") as every,
    ):
        for pairs in groups:
            traces = [trace for trace, _ in pairs]
            verdicts = {trace.key: verdict for trace, verdict in pairs}
            problem_id = traces[0].problem_id
            if problem_id in contaminated:
                decontamination = filtering["decontamination"]
                decontamination["traces_removed"] += len(traces)
                for name in contaminated[problem_id]:
                    decontamination["traces_removed_by_benchmark"][name] += len(traces)
            duplicates = exact_duplicate_traces(traces) if config.dedup.exact else set()
            if config.dedup.exact:
                filtering["exact_duplicate_traces"] += len(duplicates)
            trace_filter = TraceFilter(
                drop_truncated=config.drop_truncated,
                min_tokens=config.min_tokens,
                max_tokens=config.max_tokens,
                excluded_problems=excluded,
                excluded_traces=frozenset(duplicates),
            )
            candidates, dropped_here = filter_traces(traces, trace_filter)
            dropped += dropped_here
            kept = select_traces(candidates, verdicts, config.policy, config.k, drop_truncated=False)
            unfiltered = select_traces(candidates, verdicts, "all", None, drop_truncated=False)
            for trace in kept:
                verified.write(to_sft_example(trace, verdicts[trace.key], sft.format, sft.system_prompt, run_name))
            for trace in unfiltered:
                every.write(to_sft_example(trace, verdicts[trace.key], sft.format, sft.system_prompt, run_name))
            all_examples += len(unfiltered)
            tally.add_problem(pairs, kept, problems.get(problem_id))

    report = {
        **tally.report(),
        "verify/all_examples": all_examples,
        "verify/dropped": dict(dropped),
        "verify/filtering": filtering,
        "verify/unreadable_records": [str(error) for error in [*trace_errors, *problems.errors]],
        "verify/seconds": round(time.monotonic() - started, 2),
        "verify/responses_per_s": round(order["count"] / verified_s, 2) if verified_s > 0 else None,
        "verifier_version": VERIFIER_VERSION,
        "policy": config.model_dump(),
        "inputs": {
            "traces": fingerprint_files([traces_path]),
            "problems": fingerprint_files([problems_path]),
            **({"external": external} if external else {}),
        },
        "provenance": provenance("verify", to_container(cfg)),
    }
    if sandbox is not None:
        report["sandbox"] = sandbox
    write_json_atomic(stage_dir / "report.json", report)
    mark_complete(stage_dir, report)
    (stage_dir / PARTIAL).unlink(missing_ok=True)
    (stage_dir / PARTIAL_SETTINGS).unlink(missing_ok=True)
    return report
