"""Comparison tables from eval summaries and published baselines: markdown, CSV and LaTeX. Pure rendering.

Rows are models (this run's, other runs', then published baselines that have a number for a
shown benchmark), columns are benchmarks. A run's cell is `mean ± standard error` in percent; a
published cell carries a footnote marker naming its source.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sky_distill.evaluate.baselines import BaselineScore, baseline_cells
from sky_distill.runs import read_json
from sky_distill.verify.sandbox import layers_summary

DETAIL_KEYS = ("truncation_rate", "unparsed_rate", "mean_tokens", "median_tokens")


def collect_summaries(eval_dir: str | Path, label: str | None = None) -> list[dict[str, Any]]:
    """Every complete (model, benchmark) summary under an eval directory; `label` prefixes model names."""
    summaries = []
    for path in sorted(Path(eval_dir).glob("*/*/COMPLETE.json")):
        summary = read_json(path)
        summary["row"] = f"{label}/{summary['model']}" if label else summary["model"]
        summaries.append(summary)
    return summaries


@dataclass(frozen=True)
class Cell:
    mean: float  # a fraction for runs, percent / 100 for baselines
    stderr: float | None = None
    footnote: int | None = None
    missing: int = 0  # problems without responses in a partial result (eval.responses.allow_missing)
    expected: int = 0


@dataclass
class Table:
    metric: str
    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    footnotes: list[str] = field(default_factory=list)
    sandboxes: dict[str, str] = field(default_factory=dict)  # code benchmark -> the isolation it was scored under
    samples: dict[str, set[int]] = field(default_factory=dict)  # benchmark -> the runs' sample counts

    def header(self, benchmark: str) -> str:
        """`aime24 avg@4`: avg@n names its sample count when every run of the column agrees."""
        counts = self.samples.get(benchmark, set())
        metric = f"avg@{next(iter(counts))}" if self.metric == "avg@n" and len(counts) == 1 else self.metric
        return f"{benchmark} {metric}"


def sandbox_line(summary: dict[str, Any]) -> str:
    """The code sandbox a summary was scored under ('' for math and choice)."""
    return layers_summary(summary["sandbox"]) if summary.get("sandbox") else ""


def build_table(
    summaries: Sequence[dict[str, Any]],
    metric: str = "avg@n",
    order: Sequence[str] | None = None,
    baselines: Sequence[BaselineScore] = (),
) -> Table:
    """Run rows in `order` (then the rest), then baseline rows with a number in a shown column."""
    table = Table(metric)
    for summary in summaries:
        row = summary.get("row", summary["model"])
        benchmark = summary["benchmark"]
        key = f"eval/{benchmark}/{metric}"
        if key not in summary:
            continue
        if row not in table.rows:
            table.rows.append(row)
        if benchmark not in table.columns:
            table.columns.append(benchmark)
        table.cells[(row, benchmark)] = Cell(
            summary[key],
            summary.get(f"{key}_stderr"),
            missing=summary.get("missing_problems") or 0,
            expected=summary.get("problems_expected") or 0,
        )
        if summary.get("n"):
            table.samples.setdefault(benchmark, set()).add(int(summary["n"]))
        if sandbox_line(summary):
            seen = table.sandboxes.get(benchmark)
            line = sandbox_line(summary)
            table.sandboxes[benchmark] = line if seen in (None, line) else f"{seen}; {line}"
    if order:
        table.rows = [m for m in order if m in table.rows] + [m for m in table.rows if m not in order]
    if not table.columns:  # no runs: show every benchmark the baselines have
        table.columns = sorted({score.benchmark for score in baselines if score.group is None})
    sources: dict[str, int] = {}
    for (model, _source, benchmark), score in baseline_cells(list(baselines), table.columns, metric).items():
        citation = score.source.citation()
        if citation not in sources:
            sources[citation] = len(sources) + 1
            table.footnotes.append(citation)
        row = f"{model} (reported [{sources[citation]}])"
        if row not in table.rows:
            table.rows.append(row)
        table.cells[(row, benchmark)] = Cell(score.value / 100, None, sources[citation])
    return table


def format_score(mean: float, stderr: float | None) -> str:
    return f"{100 * mean:.1f}" if stderr is None else f"{100 * mean:.1f} ± {100 * stderr:.1f}"


def markdown_table(table: Table) -> str:
    """The table, then its numbered sources (only when a published number is shown)."""
    header = f"| model | {' | '.join(f'{table.header(b)} (%)' for b in table.columns)} |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    lines = [header, rule]
    for row in table.rows:
        cells = []
        for benchmark in table.columns:
            cell = table.cells.get((row, benchmark))
            if cell is None:
                cells.append("–")
            else:
                marker = f" [{cell.footnote}]" if cell.footnote else ""
                gap = f" ({cell.missing} of {cell.expected} missing)" if cell.missing else ""
                cells.append(format_score(cell.mean, cell.stderr) + marker + gap)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if table.footnotes:
        lines += ["", "Published numbers (as reported; protocols differ from this run's):"]
        lines += [f"[{i}] {text}" for i, text in enumerate(table.footnotes, start=1)]
    if table.sandboxes:
        lines += ["", "Code scored in the sandbox: " + "; ".join(f"{b}: {s}" for b, s in table.sandboxes.items())]
    return "\n".join(lines)


LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(char, char) for char in text)


def latex_table(table: Table) -> str:
    """A booktabs table; published cells carry a superscript source number listed below."""
    columns = "l" + "r" * len(table.columns)
    lines = [
        r"\begin{tabular}{" + columns + "}",
        r"\toprule",
        "Model & " + " & ".join(latex_escape(table.header(b)) for b in table.columns) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = []
        for benchmark in table.columns:
            cell = table.cells.get((row, benchmark))
            if cell is None:
                cells.append("--")
            elif cell.stderr is None:
                marker = rf"\textsuperscript{{{cell.footnote}}}" if cell.footnote else ""
                cells.append(f"{100 * cell.mean:.1f}{marker}")
            else:
                cells.append(f"${100 * cell.mean:.1f} \\pm {100 * cell.stderr:.1f}$")
        lines.append(latex_escape(row) + " & " + " & ".join(cells) + r" \\")
    lines.append(r"\bottomrule")
    for index, text in enumerate(table.footnotes, start=1):
        lines.append(
            rf"\multicolumn{{{len(table.columns) + 1}}}{{l}}{{\footnotesize \textsuperscript{{{index}}} {latex_escape(text)}}} \\"
        )
    if table.sandboxes:
        note = "Code scored in the sandbox: " + "; ".join(f"{b}: {s}" for b, s in table.sandboxes.items())
        lines.append(rf"\multicolumn{{{len(table.columns) + 1}}}{{l}}{{\footnotesize {latex_escape(note)}}} \\")
    lines.append(r"\end{tabular}")
    return "\n".join(lines)


def csv_rows(
    summaries: Sequence[dict[str, Any]], metric: str, baselines: Sequence[BaselineScore] = ()
) -> list[dict[str, Any]]:
    """Long format: one row per (model, benchmark) with the score and everything next to it."""
    rows = []
    for summary in summaries:
        benchmark = summary["benchmark"]
        prefix = f"eval/{benchmark}"
        if f"{prefix}/{metric}" not in summary:
            continue
        rows.append(
            {
                "kind": "run",
                "model": summary.get("row", summary["model"]),
                "benchmark": benchmark,
                "group": "",
                "metric": metric,
                "value": summary[f"{prefix}/{metric}"],
                "stderr": summary.get(f"{prefix}/{metric}_stderr"),
                "ci_low": summary.get(f"{prefix}/{metric}_ci_low"),
                "ci_high": summary.get(f"{prefix}/{metric}_ci_high"),
                "n": summary.get("n"),
                "problems": summary.get("problems"),
                **{key: summary.get(f"{prefix}/{key}") for key in DETAIL_KEYS},
                "source": "",
                "sandbox": sandbox_line(summary),
            }
        )
    for score in baselines:
        rows.append(
            {
                "kind": "published",
                "model": score.model,
                "benchmark": score.benchmark,
                "group": score.group or "",
                "metric": score.metric,
                "value": score.value / 100,
                "stderr": None,
                "ci_low": None,
                "ci_high": None,
                "n": None,
                "problems": None,
                **dict.fromkeys(DETAIL_KEYS),
                "source": score.source.citation() + (f" [{score.note}]" if score.note else ""),
                "sandbox": "",
            }
        )
    return rows


def csv_table(
    summaries: Sequence[dict[str, Any]], metric: str = "avg@n", baselines: Sequence[BaselineScore] = ()
) -> str:
    rows = csv_rows(summaries, metric, baselines)
    buffer = io.StringIO()
    fields = ["kind", "model", "benchmark", "group", "metric", "value", "stderr", "ci_low", "ci_high", "n"]
    fields += ["problems", *DETAIL_KEYS, "source", "sandbox"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def details_table(summaries: Sequence[dict[str, Any]]) -> str:
    """Per (model, benchmark): every score with its uncertainty and, next to it, lengths and failure rates."""
    header = (
        "| model | benchmark | n | problems | avg@n (%) | 95% CI | pass@k (%) | maj@k (%) | truncated (%) | "
        "unparsed (%) | mean tokens | median tokens |"
    )
    lines = [header, "|" + "---|" * 12]

    def percent(value: Any) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    def number(value: Any) -> str:
        return "–" if value is None else f"{value:.0f}"

    for s in summaries:
        p = f"eval/{s['benchmark']}"
        names = [key[len(p) + 1 :] for key in s if key.startswith(f"{p}/pass@")]
        ks = sorted(int(name.split("@")[1]) for name in names if "_" not in name)
        top = ks[-1] if ks else None
        pass_k = f"{percent(s.get(f'{p}/pass@{top}'))} (k={top})" if top and top > 1 else "–"
        maj_k = f"{percent(s.get(f'{p}/maj@{top}'))} (k={top})" if top and top > 1 else "–"
        ci = f"{percent(s.get(f'{p}/avg@n_ci_low'))}–{percent(s.get(f'{p}/avg@n_ci_high'))}"
        lines.append(
            f"| {s.get('row', s['model'])} | {s['benchmark']} | {s.get('n')} | {s.get('problems')} | "
            f"{format_score(s[f'{p}/avg@n'], s.get(f'{p}/avg@n_stderr'))} | {ci} | {pass_k} | {maj_k} | "
            f"{percent(s.get(f'{p}/truncation_rate'))} | {percent(s.get(f'{p}/unparsed_rate'))} | "
            f"{number(s.get(f'{p}/mean_tokens'))} | {number(s.get(f'{p}/median_tokens'))} |"
        )
    return "\n".join(lines)
