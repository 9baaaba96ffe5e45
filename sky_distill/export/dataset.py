"""The SFT data as a Hugging Face dataset: `data/train-00000-of-00001.parquet` plus a README.md card
(sources, teachers, sampling, verifier version, acceptance, decontamination counts);
`datasets.load_dataset(<folder or repo>)` finds the train split by the file name. The card declares no
`configs:`: with one, datasets 5.2 caches a local folder by its name alone, so two runs' exports
(both `export/dataset`) would load as whichever was read first.

Columns: `messages` (role, content), `problem_id`, `sample_index`, `source`, `metadata` (a JSON string:
its keys vary with the teacher and engine, so one schema holds every record).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sky_distill.records import SFTExample, read_jsonl_strict
from sky_distill.runs import fingerprint_files

DATA_FILE = "data/train-00000-of-00001.parquet"


def example_row(example: SFTExample) -> dict[str, Any]:
    return {
        "messages": [message.model_dump() for message in example.messages],
        "problem_id": example.problem_id,
        "sample_index": example.sample_index,
        "source": example.source,
        "metadata": json.dumps(example.metadata, ensure_ascii=False, sort_keys=True),
    }


def write_parquet(examples: list[SFTExample], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [
            ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("problem_id", pa.string()),
            ("sample_index", pa.int64()),
            ("source", pa.string()),
            ("metadata", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pylist([example_row(e) for e in examples], schema=schema), path)


def card_facts(examples: list[SFTExample], verify_report: dict[str, Any] | None) -> dict[str, Any]:
    """What the card states, gathered from the records' metadata and the verify report."""
    teachers = Counter(str(e.metadata.get("teacher") or "unknown") for e in examples)
    sources = Counter(e.source or "unknown" for e in examples)
    sampling = Counter(
        json.dumps(e.metadata.get("sampling"), sort_keys=True) for e in examples if e.metadata.get("sampling")
    )
    formats = Counter(str(e.metadata.get("format", "unknown")) for e in examples)
    facts: dict[str, Any] = {
        "examples": len(examples),
        "problems": len({e.problem_id for e in examples}),
        "teachers": dict(teachers.most_common()),
        "sources": dict(sorted(sources.items())),
        "sampling": [json.loads(text) for text, _ in sampling.most_common(3)],
        "formats": dict(formats),
    }
    if verify_report:
        facts["verifier_version"] = verify_report.get("verifier_version")
        facts["policy"] = verify_report.get("policy", {}).get("policy")
        facts["acceptance_rate"] = verify_report.get("verify/acceptance_rate")
        facts["samples_judged"] = verify_report.get("verify/samples")
        facts["acceptance_by_source"] = {
            group.split("=", 1)[1]: {"samples": v["samples"], "correct": v["correct"], "rate": v["acceptance_rate"]}
            for group, v in verify_report.get("verify/by_group", {}).items()
            if group.startswith("source=")
        }
        filtering = verify_report.get("verify/filtering", {})
        decontamination = filtering.get("decontamination")
        facts["decontamination"] = (
            {
                "benchmarks": list(decontamination.get("benchmarks", {})),
                "ngram": decontamination.get("ngram"),
                "problems_removed": decontamination.get("problems_removed"),
                "traces_removed": decontamination.get("traces_removed"),
                "traces_removed_by_benchmark": decontamination.get("traces_removed_by_benchmark"),
            }
            if decontamination
            else None
        )
        facts["near_duplicate_problems_removed"] = filtering.get("near_duplicate_problems_removed")
        facts["exact_duplicate_traces"] = filtering.get("exact_duplicate_traces")
        external = verify_report.get("inputs", {}).get("external")
        if external:
            facts["external_sources"] = [
                {"name": s["name"], "origin": s["origin"], "layout": s["layout"], "rows": s["rows"]}
                for s in external["sources"]
            ]
    return facts


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(name: str, facts: dict[str, Any], fingerprint: str) -> str:
    """README.md of the dataset: YAML header (tags) and the facts as Markdown."""
    header = "\n".join(
        [
            "---",
            "tags:",
            "- sky-distill",
            "- distillation",
            "- reasoning",
            "---",
        ]
    )
    parts = [
        header,
        f"# {name}",
        f"Chat-formatted SFT data written by sky-distill: {facts['examples']} examples over {facts['problems']} "
        f"problems (data fingerprint `{fingerprint}`; thinking format: "
        f"{', '.join(f'{k} {v}' for k, v in facts['formats'].items())}).",
        '```python\nimport datasets\nrows = datasets.load_dataset("<this repo or folder>", split="train")\n```',
        "## Sources\n" + _table(["source", "examples"], [[k, v] for k, v in facts["sources"].items()]),
    ]
    if facts.get("external_sources"):
        rows = [[s["name"], s["origin"], s["layout"], s["rows"]] for s in facts["external_sources"]]
        parts.append("External trace sets, re-verified:\n\n" + _table(["name", "origin", "layout", "rows"], rows))
    parts.append("## Teacher\n" + _table(["model", "examples"], [[k, v] for k, v in facts["teachers"].items()]))
    sampling = "\n".join(f"- `{json.dumps(s, sort_keys=True)}`" for s in facts["sampling"]) or "- not recorded"
    parts.append("## Sampling\n" + sampling)
    if "verifier_version" in facts:
        rows = [[k, v["samples"], v["correct"], f"{v['rate']:.1%}"] for k, v in facts["acceptance_by_source"].items()]
        parts.append(
            f"## Verification\nVerifier `sky_distill.verify` version {facts['verifier_version']}, policy "
            f"`{facts['policy']}`: {facts['samples_judged']} responses judged, acceptance "
            f"{facts['acceptance_rate']:.1%}.\n\n" + _table(["source", "judged", "correct", "acceptance"], rows)
        )
        decontamination = facts.get("decontamination")
        text = (
            f"Against {', '.join(decontamination['benchmarks'])} ({decontamination['ngram']}-gram overlap): "
            f"{decontamination['problems_removed']} problems, {decontamination['traces_removed']} traces removed "
            f"({decontamination['traces_removed_by_benchmark']})."
            if decontamination
            else "Not decontaminated (verify.decontaminate.benchmarks was empty)."
        )
        dedup = [
            f"{facts[key]} {label}"
            for key, label in (
                ("near_duplicate_problems_removed", "near-duplicate problems removed"),
                ("exact_duplicate_traces", "exact duplicate traces removed"),
            )
            if facts.get(key) is not None
        ]
        parts.append("## Decontamination and deduplication\n" + text + (f" {'; '.join(dedup)}." if dedup else ""))
    return "\n\n".join(parts) + "\n"


def export_dataset(
    sft_file: str | Path, out_dir: str | Path, name: str, verify_report: dict[str, Any] | None
) -> dict[str, Any]:
    """Write the parquet file and the card; return the card's facts (with the data fingerprint)."""
    out_dir = Path(out_dir)
    examples = read_jsonl_strict(sft_file, SFTExample)
    write_parquet(examples, out_dir / DATA_FILE)
    fingerprint = fingerprint_files([sft_file])
    facts = card_facts(examples, verify_report)
    (out_dir / "README.md").write_text(dataset_card(name, facts, fingerprint), encoding="utf-8")
    return {**facts, "fingerprint": fingerprint, "path": str(out_dir)}
