"""`sky-distill merge`: after all generation shards ran (e.g. a SLURM array), check and merge them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_distill.config import stage_config, to_container
from sky_distill.generate.merge import merge_shards
from sky_distill.runs import provenance


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "merge")
    stage_dir = Path(typed["paths"].run_dir) / "generate"
    return merge_shards(stage_dir, typed["generate"].shard_count, provenance("generate", to_container(cfg)))
