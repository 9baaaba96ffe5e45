"""Provenance records where a model was, not where it was relative to some working directory."""

import os

from sky_distill.runs import provenance, resolve_local_paths


def test_relative_model_paths_are_recorded_resolved(tmp_path, monkeypatch):
    """Seen: `'./models/tiny-student'` in provenance, which says nothing once the run directory moves."""
    (tmp_path / "models" / "tiny-student").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = {
        "student": {"path": "./models/tiny-student", "name": "tiny"},
        "teacher": {"path": "Qwen/QwQ-32B-Preview"},  # a Hub id stays as written
        "train": {"init": "models/tiny-student", "distill": {"teacher_path": "./models/absent"}},
        "eval": {"models": ["./models/tiny-student", "student"]},
    }
    recorded = provenance("eval", config)["config"]
    student = str(tmp_path / "models" / "tiny-student")
    assert recorded["student"] == {"path": student, "name": "tiny"}
    assert recorded["teacher"]["path"] == "Qwen/QwQ-32B-Preview"
    assert recorded["train"]["init"] == student and recorded["train"]["distill"]["teacher_path"] == "./models/absent"
    assert recorded["eval"]["models"] == [student, "student"]
    assert config["student"]["path"] == "./models/tiny-student"  # the caller's config is not changed
    assert os.path.isabs(resolve_local_paths({"root": "."})["root"])
