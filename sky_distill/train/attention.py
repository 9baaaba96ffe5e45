"""Attention on packed rows without an `L x L` mask: `attn_implementation="sdpa_varlen"`.

A packed row holds several sequences, each starting at position 0 (`data.collate_packed`).
`varlen_keys` turns the position ids into the cumulative sequence lengths and longest length
that variable-length kernels take (transformers' `cu_seq_lens_q/k`, `max_length_q/k` keyword
arguments, the ones its flash-attention path reads too), once per micro batch on the host, so no
layer syncs with it. The attention registered here then runs each sequence causally on its own:
on a GPU with torch's variable-length flash kernel (`torch.nn.attention.varlen`) in one call; on
CPU (or without that kernel) as one causal SDPA call per sequence, which is the packed row's
exact attention at the cost of the sequences alone, never a dense block mask.
Rows with padding and no packing (an `attention_mask`) use transformers' SDPA path unchanged.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

NAME = "sdpa_varlen"


class VarlenUnavailableError(RuntimeError):
    """Packing on a GPU with no variable-length attention kernel."""


def torch_varlen_attn():
    """torch's variable-length flash attention (`varlen_attn`), or None on builds without it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_keys(position_ids: torch.Tensor) -> dict[str, Any]:
    """cu_seq_lens_q/k (int32, [sequences + 1]) and max_length_q/k of the rows flattened into one,
    a new sequence wherever the position restarts at 0 (padding at a row's end is one, too)."""
    flat = position_ids.reshape(-1).cpu()
    starts = (flat == 0).nonzero(as_tuple=True)[0]
    if starts.numel() == 0 or starts[0] != 0:
        raise ValueError("packed position_ids must start every row at position 0")
    cu = torch.cat([starts, torch.tensor([flat.numel()])]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    cu = cu.to(position_ids.device)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def _per_sequence(query, key, value, bounds: list[int], scaling: float | None) -> torch.Tensor:
    """[T, H, D] attention of each causal sequence alone, by SDPA per sequence (no mask)."""
    if bounds[0] != 0 or bounds[-1] != query.shape[0]:
        raise ValueError(f"sequence bounds {bounds[0]}..{bounds[-1]} do not cover the {query.shape[0]} positions")
    out = torch.empty_like(query)
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = (tensor[start:end].transpose(0, 1)[None] for tensor in (query, key, value))
        out[start:end] = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)[0].transpose(0, 1)
    return out


def _flash_varlen(query, key, value, cu: torch.Tensor, longest: int, scaling: float | None) -> torch.Tensor:
    kernel = torch_varlen_attn()
    parameters = inspect.signature(kernel).parameters
    options: dict[str, Any] = {"scale": scaling}
    if "window_size" in parameters:
        options["window_size"] = (-1, 0)
    else:
        options["is_causal"] = True
    if key.shape[1] != query.shape[1]:
        if "enable_gqa" in parameters:
            options["enable_gqa"] = True
        else:
            groups = query.shape[1] // key.shape[1]
            key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return kernel(query, key, value, cu, cu, longest, longest, **options)


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: [B, H, L, D] in, [B, L, H, D] out."""
    cu, longest = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
    position_ids = kwargs.get("position_ids")
    batch, heads, length, dim = query.shape
    # Position ids describe packed rows only when there is one per token: transformers passes a
    # broadcast [1, L] arange for plain unpadded rows, which would cover the first row alone.
    if (
        cu is None
        and attention_mask is None
        and position_ids is not None
        and length > 1
        and position_ids.numel() == batch * length
    ):
        keys = varlen_keys(position_ids)  # not precomputed: correct, at one host sync per layer
        cu, longest = keys["cu_seq_lens_q"], keys["max_length_q"]
    if cu is None or attention_mask is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    q, k, v = (tensor.transpose(1, 2).reshape(batch * length, tensor.shape[1], dim) for tensor in (query, key, value))
    if q.is_cuda and torch_varlen_attn() is not None:
        out = _flash_varlen(q, k, v, cu, longest, scaling)
    elif q.is_cuda:
        raise VarlenUnavailableError(
            "packed rows on a GPU need torch.nn.attention.varlen (torch >= 2.10) or flash_attn"
        )
    else:
        groups = heads // k.shape[1]
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = _per_sequence(q, k, v, cu.tolist(), scaling)
    return out.reshape(batch, length, heads, dim), None


def varlen_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """No mask for rows without padding (the sequences come from cu_seq_lens); SDPA's otherwise."""
    if kwargs.get("attention_mask") is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, **kwargs)


def register() -> str:
    """Make `attn_implementation="sdpa_varlen"` known to transformers; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, varlen_mask)
    return NAME
