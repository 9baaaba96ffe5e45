"""One rule for resuming: what a stage's outputs depend on is recorded beside them on first use, and a
later run with other settings is refused, naming the keys that differ. Callers leave out what may
change (throughput options, the number of samples `n`: more samples only add sample indices)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_distill.errors import SkyDistillError
from sky_distill.runs import fingerprint_object, read_json, write_json_atomic


class SettingsChangedError(SkyDistillError):
    """Outputs made with other settings than this run's would be mixed with its own."""


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts. Pure."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [change for key in keys for change in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def recorded_settings(path: Path) -> dict[str, Any] | None:
    """The settings recorded at `path` (None: none yet)."""
    if not path.exists():
        return None
    recorded = read_json(path)
    return recorded.get("settings", {}) if "fingerprint" in recorded else recorded  # an early eval wrote them bare


def refuse_changes(what: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Raise `SettingsChangedError` naming each key that differs (old -> new); nothing recorded is no change."""
    changes = changed_keys(old, new) if old is not None else []
    if changes:
        shown = ", ".join(f"{key} ({_lookup(old, key)!r} -> {_lookup(new, key)!r})" for key in changes[:5])
        raise SettingsChangedError(
            f"{what} was made with other settings: {shown}; use another run_name, or delete those files to start over"
        )


def record_settings(path: Path, settings: dict[str, Any]) -> str:
    """Write the settings and their fingerprint; returns the fingerprint."""
    fingerprint = fingerprint_object(settings)
    write_json_atomic(path, {"fingerprint": fingerprint, "settings": settings})
    return fingerprint


def check_settings(path: Path, settings: dict[str, Any], what: str) -> str:
    """Record the settings on first use; afterwards refuse different ones. Returns their fingerprint."""
    refuse_changes(what, recorded_settings(path), settings)
    return record_settings(path, settings)


def _lookup(settings: Any, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str) and len(value) > 40:
        return value[:37] + "..."
    return value
