"""Pushing a folder to the Hugging Face Hub through `huggingface_hub`, or to a local folder hub.

An endpoint `file:///some/dir` is a file-based stand-in for the Hub: repositories are folders
`<dir>/<datasets|models>/<owner>/<name>`, written the way `HfApi.upload_folder` would, and
`datasets.load_dataset` opens them. Tests use it (never the network); it also suits an
air-gapped site. Any other endpoint (or none: huggingface.co) goes through `HfApi`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

RepoType = Literal["dataset", "model"]


class FolderHub:
    """The two `HfApi` calls a push makes, on a local folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def repo_dir(self, repo_id: str, repo_type: RepoType) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def create_repo(self, repo_id: str, repo_type: RepoType, private: bool = True, exist_ok: bool = False) -> str:
        directory = self.repo_dir(repo_id, repo_type)
        if directory.exists() and not exist_ok:
            raise FileExistsError(f"repository {repo_id} exists in {self.root}")
        directory.mkdir(parents=True, exist_ok=True)
        return directory.as_uri()

    def upload_folder(
        self, folder_path: str | Path, repo_id: str, repo_type: RepoType, commit_message: str = ""
    ) -> str:
        directory = self.repo_dir(repo_id, repo_type)
        if not directory.exists():
            raise FileNotFoundError(f"repository {repo_id} does not exist in {self.root}; create it first")
        shutil.copytree(folder_path, directory, dirs_exist_ok=True)
        return directory.as_uri()


def hub_client(endpoint: str | None, token: str | None = None) -> Any:
    """A `FolderHub` for `file://` endpoints, else `huggingface_hub.HfApi`."""
    if endpoint and endpoint.startswith("file://"):
        return FolderHub(endpoint.removeprefix("file://"))
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def push_folder(
    folder: str | Path, repo_id: str, repo_type: RepoType, endpoint: str | None = None, private: bool = True
) -> str:
    """Create the repository if needed and upload the folder; return where it went."""
    api = hub_client(endpoint)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    result = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message="sky-distill export"
    )
    return str(result)
