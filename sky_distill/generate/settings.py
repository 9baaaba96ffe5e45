"""What a shard's traces depend on, so that a resumed run cannot mix in traces made differently.

The settings are written beside the shard before its first sample; a later run with other
settings (another model, prompt, temperature, ...) is refused with the keys that differ.
Throughput options (parallelism, memory, batching, concurrency) and `n` may change: more
samples per problem just adds sample indices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_distill.config import ModelConfig, SamplingConfig
from sky_distill.errors import SkyDistillError
from sky_distill.runs import fingerprint_object, read_json, write_json_atomic


class SettingsChangedError(SkyDistillError):
    """A shard was started with other settings than this run's."""


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


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts. Pure."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [change for key in keys for change in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def check_settings(path: Path, settings: dict[str, Any]) -> str:
    """Record the settings on first use; afterwards refuse different ones. Returns their fingerprint."""
    fingerprint = fingerprint_object(settings)
    if not path.exists():
        write_json_atomic(path, {"fingerprint": fingerprint, "settings": settings})
        return fingerprint
    recorded = read_json(path)
    if recorded.get("fingerprint") != fingerprint:
        changes = changed_keys(recorded.get("settings", {}), settings)
        shown = ", ".join(
            f"{key} ({_lookup(recorded.get('settings', {}), key)!r} -> {_lookup(settings, key)!r})"
            for key in changes[:5]
        )
        raise SettingsChangedError(
            f"{path.name.removesuffix('.settings.json')} in {path.parent} was generated with other settings: {shown}; "
            "use another run_name, or delete the shard's files to start it over"
        )
    return fingerprint


def _lookup(settings: dict[str, Any], dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str) and len(value) > 40:
        return value[:37] + "..."
    return value
