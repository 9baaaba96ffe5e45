"""Bootstrapped models are cached per fingerprint: one directory per set of settings that shape them."""

import subprocess
import sys

import pytest

from sky_distill.config import stage_config
from sky_distill.models.bootstrap import model_fingerprint
from tests.conftest import compose_config


def paths(*overrides):
    cfg = compose_config(list(overrides), stage="pipeline")
    return cfg.teacher.path, cfg.student.path, cfg


def test_other_settings_get_another_directory_and_the_seed_does_not():
    demo_teacher, demo_student, _ = paths()
    smoke_teacher, _, _ = paths("experiment=smoke")
    assert smoke_teacher != demo_teacher  # the smoke test never replaces the demo's teacher
    assert paths("teacher.bootstrap.max_steps=7")[0] != demo_teacher
    assert paths("teacher.bootstrap.max_steps=7")[1] == demo_student
    assert paths("seed=3")[:2] == (demo_teacher, demo_student)  # every seed distils the same teacher
    assert paths("task.test_size=9")[0] == demo_teacher  # eval's size does not shape the model


def test_the_directory_is_named_by_the_fingerprint_bootstrap_checks():
    teacher_path, student_path, cfg = paths("experiment=smoke")
    typed = stage_config(cfg, "bootstrap")
    assert teacher_path.endswith(f"tiny-teacher-{model_fingerprint(typed['teacher'], typed['task'])}")
    assert student_path.endswith(f"tiny-student-{model_fingerprint(typed['student'], typed['task'])}")
    assert cfg.train.init == student_path


@pytest.mark.slow
def test_a_bootstrap_repeats_bit_for_bit(tmp_path):
    """The same settings on the same machine build the same weights (2 DeepSpeed ranks, gloo)."""
    small = [
        "experiment=smoke",
        "teacher.bootstrap.max_steps=4",
        "teacher.bootstrap.num_examples=64",
        "student.bootstrap.max_steps=2",
        "student.bootstrap.num_examples=32",
    ]
    built = []
    for name in ("a", "b"):
        models = tmp_path / name
        command = [sys.executable, "-m", "sky_distill.cli", "bootstrap", *small, f"paths.models_dir={models}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        built.append({path.parent.name: path.read_bytes() for path in models.glob("tiny-*/model.safetensors")})
    assert len(built[0]) == 2 and built[0].keys() == built[1].keys()
    assert built[0] == built[1]
