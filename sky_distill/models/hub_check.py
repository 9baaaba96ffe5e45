"""Failing at once, in one line, on a Hub model id that cannot be loaded.

Without this, transformers and vLLM retry the Hub for half a minute and end in a long
traceback. A Hub id is fine when its config is in the local cache; otherwise, offline
(HF_HUB_OFFLINE) it is an error, and online one metadata request (no retries) tells a missing
model from an unreachable Hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from sky_distill.errors import MissingInputError
from sky_distill.models.reference import is_hub_id

TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    return (
        os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE
        or os.environ.get("TRANSFORMERS_OFFLINE", "").upper() in TRUE
    )


def in_hub_cache(repo_id: str, revision: str | None = None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    return isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision), str)


def check_hub_model(reference: str, role: str, key: str, revision: str | None = None, timeout_s: float = 10) -> None:
    """Raise a one-line `MissingInputError` unless `reference` is a directory, a cached or a reachable Hub model.

    `key` shows how to name a local copy instead, e.g. `eval.models=[/path/to/model]`.
    """
    if Path(reference).is_dir() or not is_hub_id(reference) or in_hub_cache(reference, revision):
        return
    advice = (
        f"download it where the Hub is reachable (`hf download {reference}`, into the HF cache) "
        f"or point at a local copy: {key}"
    )
    if hub_offline():
        raise MissingInputError(
            f"{role} {reference!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {advice}"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().model_info(reference, revision=revision, timeout=timeout_s)
    except GatedRepoError:
        raise MissingInputError(
            f"{role} {reference!r} is gated: accept its terms on huggingface.co and log in (`hf auth login` or HF_TOKEN); "
            f"or {advice}"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise MissingInputError(
            f"{role} {reference!r} is not a model on the Hugging Face Hub (or it is private: log in with "
            f"`hf auth login`); check the name, or {advice}"
        ) from None
    except Exception as error:  # network errors come as many types (httpx, OSError, timeouts)
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:160]
        raise MissingInputError(
            f"{role} {reference!r} is not in the local Hugging Face cache and the Hub cannot be reached ({reason}); "
            f"{advice}"
        ) from None
