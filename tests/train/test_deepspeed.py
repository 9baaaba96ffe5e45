"""The SFT recipe under real DeepSpeed ZeRO on 2 CPU ranks: trains, exports, reloads."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sky_distill.config import TrainConfig
from sky_distill.records import Message, SFTExample, write_jsonl
from sky_distill.runs import completion
from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems, reference_response
from sky_distill.tracking import read_metrics
from sky_distill.train.job import TrainJob
from sky_distill.train.launch import launch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "data.jsonl"
    problems = make_problems(ArithmeticSpec(), "train", 128)
    write_jsonl(
        path,
        [
            SFTExample(
                messages=[
                    Message(role="user", content=p.problem),
                    Message(role="assistant", content=reference_response(p, "worked")),
                ]
            )
            for p in problems
        ],
    )
    return path


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_on_two_cpu_ranks_trains_and_exports(stage, sft_file, tiny_model_dir, tmp_path):
    train = TrainConfig(
        name=f"zero{stage}",
        init=str(tiny_model_dir),
        max_steps=16,
        epochs=100,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        global_batch_size=16,
        micro_batch_size=4,
        max_seq_len=256,
        packing=True,
        num_procs=2,
        log_every=1,
    )
    job = TrainJob(train=train, zero={"stage": stage}, data_files=[str(sft_file)], output_dir=str(tmp_path / "out"))
    launch(job)
    summary = completion(tmp_path / "out")
    assert summary["world_size"] == 2 and summary["zero_stage"] == stage
    losses = [row["train/loss"] for row in read_metrics(tmp_path / "out" / "metrics.jsonl")]
    assert len(losses) == 16
    assert losses[-1] < 0.7 * losses[0], losses
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "final")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out" / "final")
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    changed = any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))
    assert changed, "the exported weights are the initial weights"
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Compute 1 + 2."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4 or tokenizer.eos_token_id in out[0].tolist()
