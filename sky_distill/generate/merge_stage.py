"""`sky-distill merge`: after all generation shards ran (e.g. a SLURM array), check and merge them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sky_distill.config import stage_config, to_container
from sky_distill.generate.merge import check_shards, merge_shards, shards_fingerprint
from sky_distill.runs import completion, provenance

log = logging.getLogger(__name__)


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "merge")
    stage_dir = Path(typed["paths"].run_dir) / "generate"
    shard_count = typed["generate"].shard_count
    merged = completion(stage_dir)
    if merged is not None and merged.get("shards_fingerprint") == shards_fingerprint(
        check_shards(stage_dir, shard_count)
    ):
        log.info("%s is merged and no shard changed since", stage_dir)
    else:
        merged = merge_shards(stage_dir, shard_count, provenance("generate", to_container(cfg)))
    return {key: value for key, value in merged.items() if key != "provenance"}
