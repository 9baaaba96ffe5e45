"""Serving several checkpoints of one architecture from one vLLM engine, one after another.

Eval scores many students fine-tuned from the same base model. Starting a vLLM engine costs
far more than sampling a small model (two processes, imports, KV-cache set-up), so models of
one *family* (same architecture config, tokenizer, generation config and engine options) share
an engine: the next checkpoint's weights are loaded in place on every worker, as RLHF
frameworks sync policy weights into vLLM, and the prefix cache is reset so that no KV computed
with the previous weights is reused. Per-sample seeds make the samples the same as a fresh
engine's (`tests/evaluate/test_engine_reuse.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

from sky_distill.config import ModelConfig
from sky_distill.runs import fingerprint_files, fingerprint_object

WORKER_EXTENSION = "sky_distill.generate.weight_swap.WeightLoader"
# Files that must agree for two checkpoints to share an engine (the weights may differ).
FAMILY_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
IGNORED_CONFIG_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype")


class WeightLoader:
    """A vLLM worker extension (`worker_extension_cls`): its methods become the worker's."""

    def load_weights_from(self, directory: str) -> int:
        """Load every safetensors file of `directory` into the worker's model; the number of tensors."""
        from safetensors.torch import load_file

        files = sorted(Path(directory).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no .safetensors weights in {directory}")
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        loaded = 0
        for file in files:
            loaded += len(model.load_weights(load_file(str(file)).items()))
        return loaded


def engine_family(model: ModelConfig) -> str | None:
    """A key shared by models that can be served by one engine in turn; None if this one cannot."""
    directory = Path(model.path)
    if model.engine.backend != "vllm" or model.engine.data_parallel_size > 1 or not directory.is_dir():
        return None
    config_file = directory / "config.json"
    if not config_file.exists():
        return None
    config = {k: v for k, v in json.loads(config_file.read_text()).items() if k not in IGNORED_CONFIG_KEYS}
    present = [directory / name for name in FAMILY_FILES if (directory / name).exists()]
    serving = model.model_dump(exclude={"name", "path", "revision", "bootstrap"})
    return fingerprint_object(
        {
            "config": config,
            "files": [path.name for path in present],
            "contents": fingerprint_files(present),
            "serving": serving,
        }
    )
