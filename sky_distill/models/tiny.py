"""Tiny Qwen2 / Llama models built from config, for the demo and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, PreTrainedModel, PreTrainedTokenizerBase, Qwen2Config

from sky_distill.models.tokenizer import save_byte_tokenizer

ARCHITECTURES = {"qwen2": Qwen2Config, "llama": LlamaConfig}


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny decoder. vLLM's CPU attention needs head_dim 64 (hidden / heads)."""

    architecture: str = "qwen2"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 1024
    vocab_size: int = 320  # the byte tokenizer's 261 tokens, padded to a multiple of 64

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {self.architecture!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")


def build_tiny_model(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    """A randomly initialised causal LM of the given shape, seeded, in float32."""
    from transformers import AutoModelForCausalLM

    if len(tokenizer) > spec.vocab_size:
        raise ValueError(f"vocab_size {spec.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    config = ARCHITECTURES[spec.architecture](
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_tiny_model(spec: TinyModelSpec, directory: str | Path, seed: int) -> PreTrainedModel:
    """Build a tiny model with the byte tokenizer and save both into `directory`."""
    tokenizer = save_byte_tokenizer(directory, model_max_length=spec.max_position_embeddings)
    model = build_tiny_model(spec, tokenizer, seed)
    model.save_pretrained(str(directory))
    return model
