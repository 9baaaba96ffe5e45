"""Loading the student for training: Hub id or path, precision, attention, ZeRO-3, kernels."""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def flash_attention_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def select_attention(requested: str, cuda: bool, packing: bool = True) -> str:
    """`auto`: flash attention 2 on a GPU where it is installed, else `sdpa_varlen`
    (`train/attention.py`: torch's varlen flash kernel on GPU, per-sequence SDPA on CPU).
    Packed rows on a GPU with neither kernel are an error, not a silent dense-mask fallback."""
    from sky_distill.train.attention import NAME, VarlenUnavailableError, torch_varlen_attn

    if requested != "auto":
        return requested
    if not cuda:
        return NAME
    if flash_attention_available():
        return "flash_attention_2"
    if torch_varlen_attn() is not None:
        return NAME
    if packing:
        raise VarlenUnavailableError(
            "train.packing on a GPU needs variable-length attention: install flash-attn (the gpu extra) or "
            "torch >= 2.10 (torch.nn.attention.varlen); or set train.packing=false"
        )
    return "sdpa"


def liger_available() -> bool:
    try:
        import liger_kernel  # noqa: F401
    except ImportError:
        return False
    return True


def apply_liger_kernels(model: Any) -> bool:
    """Swap in Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) when installed on a GPU.

    The loss stays ours (`train/losses.py` works on logits, which distillation losses need),
    so Liger's own (fused) cross-entropy is not switched on. Returns whether kernels were applied.
    """
    if not (torch.cuda.is_available() and liger_available()):
        log.warning("train.liger_kernel: Liger kernels need a CUDA GPU and `pip install liger-kernel`; not applied")
        return False
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(
        model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
    )
    return True


def load_model(
    path: str,
    precision: str,
    attn_implementation: str,
    ds_config: dict[str, Any],
    gradient_checkpointing: bool,
    liger_kernel: bool = False,
    revision: str | None = None,
) -> tuple[Any, Any]:
    """The student, from a Hub id or a local path, ready for `deepspeed.initialize`.

    Under ZeRO-3 an `HfDeepSpeedConfig` is created first, so transformers partitions the
    weights across ranks as they load (no rank ever holds the whole model). It is returned
    with the model and must be kept alive for as long as the model is used.
    """
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    if attn_implementation == "sdpa_varlen":
        from sky_distill.train.attention import register

        register()
    zero3 = int(ds_config["zero_optimization"].get("stage", 0)) == 3
    keep_alive = HfDeepSpeedConfig(ds_config) if zero3 else None
    model = AutoModelForCausalLM.from_pretrained(
        path, revision=revision, dtype=DTYPES[precision], attn_implementation=attn_implementation
    )
    if liger_kernel:
        apply_liger_kernels(model)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model, keep_alive


def count_parameters(model: Any) -> int:
    """Parameters of the whole model, also when ZeRO-3 has partitioned them (`ds_numel`)."""
    seen, total = set(), 0
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += int(getattr(parameter, "ds_numel", parameter.numel()))
    return total


def flop_parameters(model: Any) -> int:
    """Parameters that take part in matrix multiplies (N of the 6 N D FLOPs): all but the input
    embedding, a table lookup. A tied embedding is kept: it is also the output projection."""
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    if output is not None and output.weight is embedding:
        return count_parameters(model)
    return count_parameters(model) - int(getattr(embedding, "ds_numel", embedding.numel()))
