"""Shared fixtures: tiny models built from config, config composition, shared benchmark data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import sky_distill  # noqa: F401  (registers the config's resolvers, as every entry point does)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
BENCHMARKS = SHARED / "benchmarks"
FIXTURES = SHARED / "fixtures"

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 2-layer Qwen2 with the byte tokenizer, saved in Hugging Face format."""
    from sky_distill.models.tiny import TinyModelSpec, save_tiny_model

    directory = tmp_path_factory.mktemp("tiny-model")
    save_tiny_model(TinyModelSpec(num_layers=2, max_position_embeddings=512), directory, seed=0)
    return directory


@pytest.fixture(scope="session")
def byte_tokenizer():
    from sky_distill.models.tokenizer import build_byte_tokenizer

    return build_byte_tokenizer()


@pytest.fixture(scope="session")
def smoke_models(tmp_path_factory) -> Path:
    """The smoke experiment's tiny teacher and student, bootstrapped once for every test that runs a pipeline."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("smoke-models")
    command = [sys.executable, "-m", "sky_distill.cli", "bootstrap", "experiment=smoke", f"paths.root={root}"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root / "models"


@pytest.fixture(scope="session")
def hub_copies(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """Local copies of every recipe data source, a few synthetic rows each (tests/recipes.py)."""
    from tests.recipes import write_hub_copies

    directory = tmp_path_factory.mktemp("hub")
    return directory, write_hub_copies(directory)


@pytest.fixture(scope="session")
def recipe_rehearsals(smoke_models, hub_copies, tmp_path_factory):
    """Each real recipe run locally by `sky-distill pipeline` on the tiny models, then `sky-distill plan`:
    recipe -> (run directory, overrides, the recorded plan, the pipeline's output).

    sky_t1_7b differs from sky_t1_32b only in the student (the tiny one in both) and its ZeRO stage,
    so it starts from a copy of the 32B run's generation (the same teacher, task and sampling, which
    tests/test_experiments.py checks) and runs verify, train, eval and table itself."""
    import shutil

    from tests.recipes import RECIPES, rehearsal_overrides
    from tests.recipes import sky_distill as cli

    hub, _ = hub_copies
    runs = {}
    for recipe in RECIPES:
        root = tmp_path_factory.mktemp(recipe)
        overrides = rehearsal_overrides(recipe, root, smoke_models, hub)
        if recipe == "sky_t1_7b":
            shutil.copytree(runs["sky_t1_32b"][0] / "generate", root / "runs" / recipe / "generate")
        pipeline = cli("pipeline", *overrides, cwd=root)
        print(cli("plan", *overrides, cwd=root).stdout)
        run_dir = root / "runs" / recipe
        runs[recipe] = (run_dir, overrides, json.loads((run_dir / "plan.json").read_text()), pipeline.stdout)
    return runs


def compose_config(overrides: list[str] | None = None, stage: str = "generate"):
    """The Hydra config the CLI would build for these overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*(overrides or []), f"stage={stage}"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg


def requires_shared(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is not present")


def execute_notebook(path: Path, run_dir: Path, figures: Path, monkeypatch) -> str:
    """Run a notebook of `notebooks/` on a run directory; return the text its code cells printed."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("SKY_DISTILL_RUN_DIR", str(run_dir))
    monkeypatch.setenv("SKY_DISTILL_FIGURES", str(figures))
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(figures.parent)}}
    ).execute()
    nbformat.write(notebook, figures.parent / path.name)  # the executed notebook, as a user would open it
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
