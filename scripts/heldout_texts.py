"""Write the texts of the verifier's held-out v2, v3 and v4 responses from a SkyThought snapshot.

`tests/verify/data/responses_held_out_v{2,3,4}.jsonl` hold our labels and where each response is
(`source`: NovaSky-AI/SkyThought@<commit>:<outputs file> idx <row>), not the model's text, which
stays out of this repository. This script reads each response from a clone of SkyThought (any
clone holding that commit; `git clone https://github.com/NovaSky-AI/SkyThought`) and writes the
labelled rows with their `response` to `shared/verifier/responses_held_out_v{2,3,4}.jsonl` (ignored
by git), which `scripts/bench_verify.py` and `tests/verify/test_agreement.py` read when present.

    python scripts/heldout_texts.py --skythought path/to/SkyThought
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

from sky_distill.verify.labelled import HELD_OUT_TEXTS, response_excerpt

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "verify" / "data"
SOURCE = re.compile(r"NovaSky-AI/SkyThought@(?P<commit>[0-9a-f]{40}):(?P<path>\S+) idx (?P<idx>\d+)")


def outputs_file(repo: Path, commit: str, path: str) -> dict[int, dict]:
    """The rows of one upstream outputs file at `commit`, by their `idx`."""
    text = subprocess.run(
        ["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
    ).stdout
    rows = (json.loads(line) for line in text.splitlines() if line.strip())
    return {row["idx"]: row for row in rows}


def write_texts(references: Path, out: Path, skythought: Path) -> int:
    """Write the labelled rows of `references` with the text each one names; returns the row count."""
    files: dict[tuple[str, str], dict[int, dict]] = {}
    rows = []
    for number, line in enumerate(references.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        match = SOURCE.match(row["source"])
        if not match:
            raise SystemExit(f"{references}:{number}: field 'source' names no SkyThought outputs row")
        key = (match["commit"], match["path"])
        if key not in files:
            files[key] = outputs_file(skythought, *key)
        rows.append({**row, "response": response_excerpt(files[key][int(match["idx"])]["code"][0])})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"{len(rows)} responses from {len(files)} outputs files -> {out}")
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skythought", type=Path, required=True, help="a git clone of NovaSky-AI/SkyThought")
    args = parser.parse_args()
    for split, texts in HELD_OUT_TEXTS.items():
        write_texts(DATA / f"responses_held_out_{split}.jsonl", ROOT / texts, args.skythought)


if __name__ == "__main__":
    main()
