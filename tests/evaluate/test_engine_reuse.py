"""One vLLM engine serves several checkpoints of one family in turn (weights loaded in place):
the samples must equal those of a fresh engine per model, and a model of another family must
get an engine of its own."""

import pytest

from sky_distill.config import EvalConfig, ModelConfig, TaskConfig
from sky_distill.evaluate.loading import resolve_benchmark
from sky_distill.evaluate.stage import evaluate_model
from sky_distill.generate.stage import LazyEngine
from sky_distill.generate.weight_swap import engine_family
from sky_distill.models.tiny import TinyModelSpec, save_tiny_model
from sky_distill.records import EvalSample, read_jsonl_strict

pytestmark = pytest.mark.slow
ENGINE = {"dtype": "float32", "max_model_len": 512, "enforce_eager": True}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two checkpoints of one architecture (different weights) and one of another (3 layers)."""
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for name, seed, layers in (("a", 1, 2), ("b", 2, 2), ("other", 3, 3)):
        save_tiny_model(TinyModelSpec(num_layers=layers, max_position_embeddings=512), root / name, seed=seed)
        paths[name] = ModelConfig(name=name, path=str(root / name), engine=ENGINE)
    return paths


def evaluate(models, root, engine=None):
    config = EvalConfig.model_validate(
        {
            "benchmarks": ["arithmetic"],
            "options": {"arithmetic": {"sampling": {"n": 2, "max_tokens": 24, "temperature": 1.0}}},
            "workers": 1,
            "bootstrap_resamples": 20,
        }
    )
    task = TaskConfig(name="arithmetic", min_digits=1, max_digits=2, test_size=12)
    loaded = resolve_benchmark("arithmetic", {}, task, None, config.options["arithmetic"])
    holder = engine or LazyEngine(models[0], seed=0)
    try:
        for model in models:
            evaluate_model(model, holder, config, {}, lambda _: loaded, root, {"test": True})
    finally:
        if engine is None:
            holder.close()
    return {
        model.name: [
            s.response for s in read_jsonl_strict(root / model.name / "arithmetic" / "samples.jsonl", EvalSample)
        ]
        for model in models
    }, holder


def test_family_is_the_architecture_and_tokenizer_not_the_weights(checkpoints):
    assert engine_family(checkpoints["a"]) == engine_family(checkpoints["b"])
    assert engine_family(checkpoints["a"]) != engine_family(checkpoints["other"])
    served_otherwise = checkpoints["b"].model_copy(update={"system_prompt": "Be brief."})
    assert engine_family(served_otherwise) != engine_family(checkpoints["a"])


def test_a_swapped_in_checkpoint_samples_what_a_fresh_engine_does(checkpoints, tmp_path):
    a, b, other = checkpoints["a"], checkpoints["b"], checkpoints["other"]
    shared, holder = evaluate([a, b, other], tmp_path / "shared")
    assert holder.swaps == 1  # b into a's engine; `other` needed an engine of its own
    fresh_b, _ = evaluate([b], tmp_path / "fresh-b")
    fresh_other, _ = evaluate([other], tmp_path / "fresh-other")
    assert shared["b"] == fresh_b["b"]
    assert shared["other"] == fresh_other["other"]
    assert shared["a"] != shared["b"]  # the weights really changed between the two
