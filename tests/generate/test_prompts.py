"""Prompts from teacher config: templates per task family, choices, chat template overrides, seeds."""

import pytest

from sky_distill.config import ConfigError, ModelConfig, validate_groups
from sky_distill.errors import MissingInputError
from sky_distill.generate.prompts import (
    PromptError,
    format_prompt,
    messages_for,
    render_prompt_ids,
    resolve_chat_template,
    sample_seed,
)
from sky_distill.records import Message, Problem

TEACHER = ModelConfig(
    name="t",
    path="org/model",
    system_prompt="Think first.",
    prompt_template="{problem}\nBox it.",
    prompt_templates={"code": "{problem}\nWrite Python.", "choice": "{problem}\n{choices}\nAnswer with a letter."},
)


def problem(answer_type="math", choices=None, text="What is 2+2?"):
    return Problem(id="q", problem=text, source="s", answer_type=answer_type, choices=choices)


def test_each_task_family_gets_its_template():
    assert [m.content for m in messages_for(problem(), TEACHER)] == ["Think first.", "What is 2+2?\nBox it."]
    assert messages_for(problem("code"), TEACHER)[-1].content == "What is 2+2?\nWrite Python."
    choice = messages_for(problem("choice", ["3", "4", "{5}"]), TEACHER)[-1].content
    assert choice == "What is 2+2?\nA. 3\nB. 4\nC. {5}\nAnswer with a letter."
    assert messages_for(problem(), TEACHER.model_copy(update={"system_prompt": None}))[0].role == "user"


def test_a_template_that_lists_choices_needs_a_problem_with_choices():
    with pytest.raises(PromptError, match="has none") as raised:
        format_prompt("{problem} {choices}", problem())
    assert raised.value.field == "choices"
    assert format_prompt("{problem} -> \\boxed{{}}", problem(text="a {b}")) == "a {b} -> \\boxed{}"


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ({"prompt_template": "Solve it."}, "prompt_template must contain '{problem}'"),
        (
            {"prompt_templates": {"code": "{problem} {language}"}},
            "prompt_templates.code uses unknown field(s) ['language']",
        ),
        ({"prompt_template": "{problem} \\boxed{}"}, "prompt_template uses unknown field(s) ['']"),
        ({"prompt_templates": {"essay": "{problem}"}}, "prompt_templates.essay"),
    ],
)
def test_bad_templates_are_config_errors_naming_the_key(templates, message):
    with pytest.raises(ConfigError) as raised:
        validate_groups({"teacher": {"name": "t", "path": "org/m", **templates}}, {"teacher": ModelConfig})
    assert message in str(raised.value)


def test_chat_template_override_and_kwargs_shape_the_prompt(byte_tokenizer, tmp_path):
    messages = [Message(role="user", content="hi")]
    default = render_prompt_ids(byte_tokenizer, messages)
    assert byte_tokenizer.decode(default) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}"
    template += "{{ '<think>' if think else '' }}{% endif %}"
    path = tmp_path / "plain.jinja"
    path.write_text(template)
    override = resolve_chat_template(str(path))
    assert byte_tokenizer.decode(render_prompt_ids(byte_tokenizer, messages, override, {"think": True})) == "hi<think>"
    assert byte_tokenizer.decode(render_prompt_ids(byte_tokenizer, messages, template, {"think": False})) == "hi"
    with pytest.raises(MissingInputError, match="missing.jinja"):
        resolve_chat_template(str(tmp_path / "missing.jinja"))


def test_a_tokenizer_without_chat_template_needs_an_override(byte_tokenizer):
    from copy import deepcopy

    bare = deepcopy(byte_tokenizer)
    bare.chat_template = None
    with pytest.raises(PromptError, match="set teacher.chat_template"):
        render_prompt_ids(bare, [Message(role="user", content="hi")])


def test_sample_seeds_depend_on_seed_problem_and_index_only():
    seeds = {sample_seed(0, f"p{p}", i) for p in range(50) for i in range(8)}
    assert len(seeds) == 400  # distinct per sample
    assert sample_seed(0, "p1", 3) == sample_seed(0, "p1", 3) != sample_seed(1, "p1", 3)
    assert all(0 <= seed < 2**31 - 1 for seed in seeds)
