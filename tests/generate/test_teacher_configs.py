"""Teachers from config: every option overridable from the command line, defaults in one place."""

import pytest
import yaml

from sky_distill.config import EngineConfig, stage_config
from tests.conftest import REPO, compose_config

TEACHERS = sorted(path.stem for path in (REPO / "conf" / "teacher").glob("*.yaml"))


def test_the_engine_defaults_file_lists_every_option_with_its_default():
    listed = yaml.safe_load((REPO / "conf" / "teacher" / "engine" / "default.yaml").read_text())
    assert listed == EngineConfig().model_dump()


@pytest.mark.parametrize("teacher", TEACHERS)
def test_every_teacher_option_can_be_overridden_without_a_plus(teacher):
    overrides = [
        f"teacher={teacher}",
        "teacher.engine.data_parallel_size=2",
        "teacher.engine.max_num_seqs=64",
        "teacher.thought_format=sky_t1",
        "++teacher.chat_template_kwargs.enable_thinking=true",  # a key in a dict option: ++ adds or replaces
        "++teacher.prompt_templates.code='{problem} in Python'",
    ]
    model = stage_config(compose_config(overrides), "generate")["teacher"]
    assert model.engine.data_parallel_size == 2 and model.engine.max_num_seqs == 64
    assert model.chat_template_kwargs == {"enable_thinking": True} and model.thought_format == "sky_t1"
    assert model.prompt_templates["code"] == "{problem} in Python"


def test_the_published_teachers():
    def teacher(name):
        return stage_config(compose_config([f"teacher={name}"]), "generate")["teacher"]

    r1 = teacher("deepseek_r1_api")
    assert r1.engine.backend == "openai" and r1.thought_format == "reasoning_field"
    assert r1.engine.api_key_env == "DEEPSEEK_API_KEY" and r1.engine.served_model_name == "deepseek-reasoner"
    distill = teacher("r1_distill_qwen_32b")
    assert distill.path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B" and distill.thought_format == "think"
    qwq = teacher("qwq_32b_preview")
    assert qwq.path == "Qwen/QwQ-32B-Preview" and set(qwq.prompt_templates) == {"math", "code", "choice"}
    assert "{choices}" in qwq.prompt_templates["choice"]
