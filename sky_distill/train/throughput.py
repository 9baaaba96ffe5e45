"""Throughput, model FLOPs utilisation (MFU) and memory, for the training log.

MFU = achieved model FLOPs per second / peak FLOPs of the devices. Model FLOPs of a step:
6 x parameters x tokens (forward and backward through the weights; the input embedding, a
lookup, is not counted: `model.flop_parameters`) plus causal attention, 6 x layers x hidden x sum
of squared sequence lengths (packed sequences counted apart). `ThroughputSummary` gathers the
logged windows into the run's summary (tokens/s and MFU over the run, the highest memory peak).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

# Dense bf16 tensor-core peak, TFLOP/s per GPU, by a substring of the device name (first match wins).
GPU_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A6000", 155.0),
    ("A10G", 125.0),
    ("A10", 125.0),
)


def peak_tflops(configured: float | None) -> float | None:
    """Per-device peak: the configured value, else looked up for a known GPU, else unknown (CPU)."""
    if configured:
        return configured
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in GPU_PEAK_TFLOPS if key in name), None)


def step_flops(num_params: int, num_layers: int, hidden_size: int, sequence_lengths: Iterable[int]) -> float:
    lengths = list(sequence_lengths)
    return 6.0 * num_params * sum(lengths) + 6.0 * num_layers * hidden_size * sum(n * n for n in lengths)


def mfu(flops: float, seconds: float, world_size: int, peak: float | None) -> float | None:
    if not peak or seconds <= 0:
        return None
    return flops / seconds / (peak * 1e12 * world_size)


def memory_stats(device: torch.device) -> dict[str, Any]:
    """Peak accelerator memory since the last call (GiB), and this process's peak resident memory."""
    stats: dict[str, Any] = {}
    if device.type == "cuda":
        stats["train/mem/gpu_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        stats["train/mem/gpu_reserved_gib"] = torch.cuda.memory_reserved(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats["train/mem/rss_peak_gib"] = peak_rss / (2**30 if sys.platform == "darwin" else 2**20)
    return stats


@dataclass
class ThroughputSummary:
    """Tokens, FLOPs and seconds of every logged window, and the highest memory figures seen."""

    tokens: float = 0.0
    flops: float = 0.0
    seconds: float = 0.0
    peaks: dict[str, float] | None = None

    def add(self, tokens: float, flops: float, seconds: float, memory: dict[str, Any]) -> None:
        self.tokens, self.flops, self.seconds = self.tokens + tokens, self.flops + flops, self.seconds + seconds
        self.peaks = {key: max(value, (self.peaks or {}).get(key, value)) for key, value in memory.items()}

    def summary(self, world_size: int, peak: float | None) -> dict[str, Any]:
        seconds = max(self.seconds, 1e-9)
        return {
            "train/tokens_per_s": self.tokens / seconds,
            "train/mfu": mfu(self.flops, seconds, world_size, peak),
            **(self.peaks or {}),
        }


@dataclass
class ThroughputWindow:
    """Tokens, computed positions and FLOPs since the last log line, and the time it started."""

    tokens: float = 0.0
    computed: float = 0.0
    flops: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    def add(self, tokens: float, computed: float, flops: float) -> None:
        self.tokens, self.computed, self.flops = self.tokens + tokens, self.computed + computed, self.flops + flops

    def close(self, device: torch.device, world_size: int, peak: float | None, run: ThroughputSummary) -> dict:
        """The window's `train/` speed and memory metrics (also added to `run`); then start a new window."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        memory = memory_stats(device)
        run.add(self.tokens, self.flops, elapsed, memory)
        metrics = {
            "train/tokens": self.tokens,  # response and prompt tokens since the last log line
            "train/tokens_per_s": self.tokens / elapsed,
            "train/padding_fraction": 0.0 if not self.computed else 1.0 - self.tokens / self.computed,
            "train/mfu": mfu(self.flops, elapsed, world_size, peak),
            **memory,
        }
        self.tokens = self.computed = self.flops = 0.0
        self.start = time.perf_counter()
        return metrics
