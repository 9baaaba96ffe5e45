"""Where a bootstrapped model is cached: one directory per fingerprint of what shapes its weights.

`conf/teacher/tiny.yaml` names its path `${paths.models_dir}/tiny-teacher-${bootstrap_id:teacher}`,
so two experiments that bootstrap different models (the demo and `experiment=smoke`, or a changed
`teacher.bootstrap.max_steps`) never overwrite each other's model under finished runs; the same
settings find the same cached model.
"""

from __future__ import annotations

from typing import Any

from sky_distill.runs import fingerprint_object

RECIPE = 2  # bump when the bootstrap recipe's code changes what it builds


def bootstrap_fingerprint(
    bootstrap: dict[str, Any], prompt_template: str, system_prompt: str | None, task: dict[str, Any]
) -> str:
    """Everything that shapes a bootstrapped model's weights (the run's own seed does not)."""
    return fingerprint_object(
        {
            "bootstrap": bootstrap,
            "template": prompt_template,
            "system": system_prompt,
            "task": {key: task[key] for key in ("min_digits", "max_digits", "seed")},
            "recipe": RECIPE,
        }
    )


def _bootstrap_id(role: str, *, _root_: Any) -> str:
    """The `${bootstrap_id:<role>}` resolver: the fingerprint of `<role>`'s bootstrap settings."""
    from omegaconf import OmegaConf

    from sky_distill.config import BootstrapConfig, ModelConfig, TaskConfig

    node = _root_[role]
    bootstrap = BootstrapConfig.model_validate(OmegaConf.to_container(node.bootstrap, resolve=True)).model_dump()
    task = TaskConfig.model_validate(OmegaConf.to_container(_root_.task, resolve=True))
    defaults = ModelConfig.model_fields
    return bootstrap_fingerprint(
        bootstrap,
        node.get("prompt_template", defaults["prompt_template"].default),
        node.get("system_prompt", defaults["system_prompt"].default),
        task.model_dump(),
    )


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("bootstrap_id"):
        OmegaConf.register_new_resolver("bootstrap_id", _bootstrap_id)
