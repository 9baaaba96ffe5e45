"""One GPU's training step on a random-weight student shaped like Qwen2.5-1.5B at 16K packed tokens:
tokens/s, MFU and peak memory, for the fused loss against full logits and for the varlen
attention against SDPA with a dense block mask; and the loss alone, fused against unfused.

    python scripts/gpu_step.py --out runs/gpu_step          # on a CUDA machine (scripts/gpu_check.sh runs it)
    python scripts/gpu_step.py --layers 2 --tokens 2048     # a quick look

bf16 weights, AdamW (torch's fused kernel), no gradient checkpointing, one process. The row packs
sequences of 300..4,000 tokens (seeded), the first tenth of each a prompt. MFU counts 6 x
(parameters less the input embedding, unless tied) x tokens plus causal attention per sequence
(`train/throughput.py`) against the device's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Qwen2.5-1.5B's shape (config.json of Qwen/Qwen2.5-1.5B)
SHAPE = dict(
    vocab_size=151_936,
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> int:
    """Start a peak-memory window; the bytes allocated now."""
    import torch

    if not torch.cuda.is_available():
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_gib(base: int = 0) -> float | None:
    import torch

    return (torch.cuda.max_memory_allocated() - base) / 2**30 if torch.cuda.is_available() else None


def packed_lengths(tokens: int, seed: int = 0) -> list[int]:
    rng, lengths = random.Random(seed), []
    while sum(lengths) < tokens:
        lengths.append(min(rng.randint(300, 4000), tokens - sum(lengths)))
    return lengths


def packed_batch(lengths: list[int], vocab: int, device) -> dict:
    import torch

    ids = torch.randint(0, vocab, (1, sum(lengths)), generator=torch.Generator().manual_seed(1))
    labels, position_ids, start = ids.clone(), torch.cat([torch.arange(n) for n in lengths])[None], 0
    for n in lengths:
        labels[0, start : start + max(1, n // 10)] = -100
        start += n
    return {"input_ids": ids.to(device), "labels": labels.to(device), "position_ids": position_ids.to(device)}


def train_steps(model, batch, lengths, fused: bool, steps: int) -> dict:
    import torch

    from sky_distill.train.losses import CrossEntropyLoss
    from sky_distill.train.model import flop_parameters
    from sky_distill.train.throughput import peak_tflops, step_flops

    loss_fn = CrossEntropyLoss(fused=fused)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=torch.cuda.is_available())

    def step() -> float:
        sums = loss_fn(model, batch)
        sums.total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(sums.total.detach()) / int((batch["labels"] != -100).sum())

    step()  # warm-up: kernels chosen, optimizer state allocated
    reset_peak()
    start = time.perf_counter()
    losses = [step() for _ in range(steps)]
    sync()
    seconds = (time.perf_counter() - start) / steps
    config = model.config
    flops = step_flops(flop_parameters(model), config.num_hidden_layers, config.hidden_size, lengths)
    peak = peak_tflops(None)
    return {
        "loss": losses[-1],
        "step_s": seconds,
        "tokens_per_s": sum(lengths) / seconds,
        "mfu": flops / seconds / (peak * 1e12) if peak else None,
        "peak_gib": peak_gib(),
    }


def loss_only(width: int, vocab: int, tokens: int, device: str) -> dict:
    """Peak extra memory and time of the CE alone (forward and backward from hidden states)."""
    import torch

    from sky_distill.train.fused_loss import chunked_head_loss
    from sky_distill.train.losses import cross_entropy_chunks, cross_entropy_sum

    generator = torch.Generator(device=device).manual_seed(2)
    hidden = torch.randn(tokens, width, device=device, generator=generator).bfloat16().requires_grad_()
    weight = (torch.randn(vocab, width, device=device, generator=generator) * 0.02).bfloat16().requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), device=device, generator=generator)
    positions = torch.arange(tokens, device=device)
    runs = {
        "unfused": lambda: cross_entropy_sum((hidden @ weight.T)[None], positions, targets),
        "fused": lambda: chunked_head_loss(hidden, weight, cross_entropy_chunks(targets), {"ce": 1.0})[0],
    }
    result = {}
    for name, run in runs.items():
        run().backward()  # warm-up
        hidden.grad = weight.grad = None
        base = reset_peak()
        start = time.perf_counter()
        value = run()
        value.backward()
        sync()
        result[name] = {
            "value": float(value),
            "seconds": time.perf_counter() - start,
            "peak_extra_gib": peak_gib(base),
        }
        hidden.grad = weight.grad = None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--layers", type=int, default=SHAPE["num_hidden_layers"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cpu-smoke", action="store_true", help="run on CPU (a check of the script, no figures)")
    args = parser.parse_args()

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sky_distill.train.attention import register, torch_varlen_attn

    results: dict = {"torch": torch.__version__, "tokens": args.tokens, "layers": args.layers}
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print(json.dumps(results | {"skipped": "no CUDA device"}))
        return
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    results |= {"device": name, "transformers": transformers.__version__}
    results["torch_varlen_attn"] = torch_varlen_attn() is not None
    register()
    torch.manual_seed(0)
    shape = SHAPE | {"num_hidden_layers": args.layers}
    if args.cpu_smoke:
        shape |= {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2, "vocab_size": 4096}
    config = Qwen2Config(**shape, attn_implementation="sdpa_varlen")
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.config.use_cache = False
    lengths = packed_lengths(args.tokens)
    batch = packed_batch(lengths, config.vocab_size, device)
    results["sequences"] = len(lengths)
    for name, attention, fused in (
        ("varlen_fused", "sdpa_varlen", True),
        ("varlen_unfused", "sdpa_varlen", False),
        ("dense_mask_fused", "sdpa", True),
    ):
        try:
            if hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation(attention)
            else:
                model.config._attn_implementation = attention
            results[name] = train_steps(model, batch, lengths, fused, args.steps)
        except Exception as error:  # one variant failing (e.g. out of memory) must not hide the others
            results[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            traceback.print_exc()
        if device == "cuda":
            torch.cuda.empty_cache()
        print(name, json.dumps(results[name]), flush=True)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    try:
        results["ce_loss_only"] = loss_only(config.hidden_size, config.vocab_size, args.tokens, device)
    except Exception as error:
        results["ce_loss_only"] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_step.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
