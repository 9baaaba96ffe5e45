"""`sky-distill <stage> --help`: the keys of the config groups a stage reads, with their values
after the given overrides and the one-line comments written beside them in `conf/`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[\w.-]+):(?P<value>[^#]*?)(?:\s+#\s*(?P<comment>.*))?$")


def yaml_comments(text: str) -> dict[str, str]:
    """Dotted key -> the comment on its line (or the block comment just above it), by indentation."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = KEY_LINE.match(line)
        if not match or stripped.startswith("- "):
            above = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([*(name for _, name in stack), match["key"]])
        stack.append((indent, match["key"]))
        comment = match["comment"] or (above[-1] if above and indent > 0 else None)
        if comment:
            comments[key] = comment
        above = []
    return comments


def flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        return [item for key, sub in value.items() for item in flatten(sub, f"{prefix}.{key}")]
    return [(prefix, value)]


def group_help(group: str, values: dict[str, Any], choice: str | None, conf_dir: Path) -> list[str]:
    """Lines for one group: its file, then `key = value  # comment` per leaf key."""
    path = conf_dir / group / f"{choice}.yaml" if choice else None
    comments: dict[str, str] = {}
    for source in (conf_dir / group / "default.yaml", path):  # a group file may extend the group's default
        if source is not None and source.is_file():
            comments.update(yaml_comments(source.read_text()))
    purpose = ""
    if path and path.is_file():
        first = path.read_text().splitlines()[0] if path.read_text() else ""
        purpose = first.lstrip("# ").strip() if first.startswith("#") else ""
    title = f"{group} (conf/{group}/{choice}.yaml)" if choice else f"{group} (conf/config.yaml)"
    lines = [f"{title}{': ' + purpose if purpose else ''}"]
    leaves = flatten(values, group)
    width = min(44, max((len(f"{key} = {value}") for key, value in leaves), default=0))
    for key, value in leaves:
        shown = "null" if value is None else value
        entry = f"  {key} = {shown}"
        comment = comments.get(key.split(".", 1)[1])
        lines.append(f"{entry:<{width + 4}}  # {comment}" if comment else entry)
    return lines


def stage_help(stage: str, description: str, cfg: Any, conf_dir: Path) -> str:
    """The help text of one stage for a composed config (with `return_hydra_config=True`)."""
    from omegaconf import OmegaConf

    from sky_distill.config import STAGE_GROUPS

    choices = dict(cfg.hydra.runtime.choices) if "hydra" in cfg else {}
    masked = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    try:
        plain = OmegaConf.to_container(masked, resolve=True)
    except Exception:  # an interpolation that needs a running job: show it unresolved
        plain = OmegaConf.to_container(masked, resolve=False)
    assert isinstance(plain, dict)
    lines = [
        f"usage: sky-distill {stage} [key=value ...] [--cfg job] [-m]",
        f"{description}.",
        "",
        "Change any key below with key=value; pick a group file with group=name (e.g. experiment=smoke).",
        "`--cfg job` prints the composed config after checking it; `--hydra-help` shows Hydra's own flags.",
        "",
    ]
    top = {key: value for key, value in plain.items() if not isinstance(value, dict)}
    lines += ["top level (conf/config.yaml): " + ", ".join(f"{k}={v}" for k, v in top.items()), ""]
    for group in STAGE_GROUPS[stage]:
        if group in plain:
            lines += [*group_help(group, plain[group], choices.get(group), conf_dir), ""]
    return "\n".join(lines).rstrip()
