"""Peak memory and time of one training step at long rows and a 152K vocabulary: the losses on full
logits (before, `train.fused_loss=false`) against the chunked losses from hidden states (after).

    python scripts/bench_loss_memory.py                                  # 2K..16K, CE and every KD loss
    python scripts/bench_loss_memory.py --tokens 16384 --losses ce sparse_forward_kl --out runs/bench_loss
    python scripts/bench_loss_memory.py --device cuda --hidden 1536 --layers 2   # on a GPU: CUDA peak too

One step = forward, backward and an AdamW step of a random 2-layer, hidden-256 Qwen2 student
with Qwen2.5's vocabulary (152,064) on one row of `tokens` tokens (one sequence, the first 64
tokens a prompt), float32, one process. KD losses: `sparse_*` against stored top-k rows
(k = 20), `online_*` against a random teacher of the student's shape run on the same row.
Each measurement runs in its own process, so its peak resident memory (getrusage) is its own;
a process is refused memory beyond `--guard-gib` (RLIMIT_DATA) and reported as over the guard
instead of pushing a shared machine into swap or the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LOSSES = (
    "ce",
    "sparse_forward_kl",
    "sparse_reverse_kl",
    "sparse_jsd",
    "sparse_tv",
    "online_forward_kl",
    "online_reverse_kl",
    "online_jsd",
    "online_tv",
)
VOCAB, PROMPT, TOP_K = 152_064, 64, 20


def student(vocab: int, hidden: int, layers: int, seed: int):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    return Qwen2ForCausalLM(config)


def one_step(args: argparse.Namespace) -> dict:
    """Build the model and the row, run one step, return its time and peak memory."""
    import torch

    from sky_distill.config import DistillConfig
    from sky_distill.train.distill import DistillLoss
    from sky_distill.train.losses import CrossEntropyLoss

    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device)
    model = student(args.vocab, args.hidden, args.layers, 0).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, args.vocab, (1, args.tokens), generator=generator)
    labels = ids.clone()
    labels[:, :PROMPT] = -100
    batch = {"input_ids": ids, "labels": labels, "position_ids": torch.arange(args.tokens)[None]}
    fused = args.mode == "after"
    if args.loss == "ce":
        loss = CrossEntropyLoss(fused=fused)
    else:
        source, kind = args.loss.split("_", 1)
        config = DistillConfig(kind=kind, teacher="offline" if source == "sparse" else "online", teacher_path="x")
        teacher = None
        if source == "sparse":
            targets = args.tokens - PROMPT  # rows for the positions predicting tokens PROMPT..end
            scores = torch.randn(targets, TOP_K, generator=generator)
            batch["teacher_ids"] = torch.randint(0, args.vocab, (targets, TOP_K), generator=generator)
            batch["teacher_logprobs"] = scores.log_softmax(-1) - 0.1  # 10% of the mass outside the top-k
        else:
            teacher = student(args.vocab, args.hidden, args.layers, 1).to(device).requires_grad_(False).eval()
        loss = DistillLoss(config, teacher, fused=fused)
    batch = {key: value.to(device) for key, value in batch.items()}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before_gib = rss_gib()
    start = time.perf_counter()
    sums = loss(model, batch)
    sums.total.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "loss_value": float(sums.total) / (args.tokens - PROMPT),
        "seconds": seconds,
        "rss_before_step_gib": before_gib,
        "peak_rss_gib": peak_rss_gib(),
    }
    if device.type == "cuda":
        result["cuda_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def rss_gib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(args: argparse.Namespace) -> None:
    if args.guard_gib:
        limit = int(args.guard_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        result = {"status": "ok", **one_step(args)}
    except (MemoryError, RuntimeError) as error:
        if "memory" not in str(error).lower() and not isinstance(error, MemoryError):
            raise
        result = {"status": f"over the {args.guard_gib:g} GiB guard", "peak_rss_gib": peak_rss_gib()}
    print(json.dumps(result), flush=True)


def measure(args: argparse.Namespace, loss: str, tokens: int, mode: str) -> dict:
    command = [sys.executable, __file__, "--child", "--loss", loss, "--tokens", str(tokens), "--mode", mode]
    for key in ("vocab", "hidden", "layers", "guard_gib", "device", "threads"):
        value = getattr(args, key)
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True)
    row = {"loss": loss, "tokens": tokens, "mode": mode}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return row | {"status": f"failed (exit {done.returncode}): {tail[:160]}"}
    return row | json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    def cell(row: dict | None) -> str:
        if row is None:
            return "skipped"
        if row["status"] != "ok":
            return row["status"]
        cuda = f", CUDA {row['cuda_peak_gib']:.2f}" if "cuda_peak_gib" in row else ""
        return f"{row['peak_rss_gib']:.2f} GiB{cuda}, {row['seconds']:.1f} s"

    lines = ["| loss | tokens | before (full logits) | after (fused, chunked) |", "|---|---:|---|---|"]
    keys = sorted({(row["loss"], row["tokens"]) for row in rows}, key=lambda key: (LOSSES.index(key[0]), key[1]))
    for loss, tokens in keys:
        pair = {row["mode"]: row for row in rows if (row["loss"], row["tokens"]) == (loss, tokens)}
        lines.append(f"| {loss} | {tokens} | {cell(pair.get('before'))} | {cell(pair.get('after'))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--modes", nargs="+", choices=("before", "after"), default=["before", "after"])
    parser.add_argument("--before-max-tokens", type=int, default=4096, help="longest row run on full logits")
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--guard-gib", type=float, default=12.0, help="per-process memory limit (0: none)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="directory for results.json and table.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loss", default="ce", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="after", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.tokens = args.tokens[0]
        child(args)
        return
    rows = []
    for tokens in args.tokens:
        for loss in args.losses:
            for mode in args.modes:
                if mode == "before" and tokens > args.before_max_tokens:
                    continue
                row = measure(args, loss, tokens, mode)
                print(json.dumps(row), flush=True)
                rows.append(row)
    text = table(rows)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        (args.out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
