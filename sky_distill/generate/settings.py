"""What a shard's traces depend on, so that a resumed run cannot mix in traces made differently.

The settings are written beside the shard before its first sample; a later run with other
settings (another model, prompt, temperature, ...) is refused with the keys that differ.
Throughput options (parallelism, memory, batching, concurrency) and `n` may change: more
samples per problem just adds sample indices.
"""

from __future__ import annotations

from typing import Any

from sky_distill.config import ModelConfig, SamplingConfig


def trace_settings(model: ModelConfig, sampling: SamplingConfig, per_sample_seeds: bool = True) -> dict[str, Any]:
    """Everything that changes what a sample is, and nothing that only changes how fast it comes."""
    settings = {
        "model": {
            "path": model.path,
            "revision": model.revision,
            "served_model_name": model.engine.served_model_name,
            "backend": model.engine.backend,
            "dtype": model.engine.dtype,
            "quantization": model.engine.quantization,
        },
        "prompt": {
            "system_prompt": model.system_prompt,
            "prompt_template": model.prompt_template,
            "prompt_templates": dict(sorted(model.prompt_templates.items())),
            "chat_template": model.chat_template,
            "chat_template_kwargs": model.chat_template_kwargs,
            "thought_format": model.thought_format,
        },
        "sampling": sampling.model_dump(exclude={"n"}),
        "per_sample_seeds": per_sample_seeds,
    }
    if sampling.logprobs is not None:  # raw or processed log-probs are different records
        settings["logprobs_mode"] = model.engine.logprobs_mode
    return settings
