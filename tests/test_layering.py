"""Dependencies point one way: evaluate may import generate and verify, never the reverse; no
module imports a stage entry file (`*/stage.py` holds only its stage's `run`)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sky_distill"
FORBIDDEN = {
    "generate": ("sky_distill.verify", "sky_distill.evaluate", "sky_distill.benchmarks"),
    "verify": ("sky_distill.evaluate", "sky_distill.generate"),
    "benchmarks": ("sky_distill.evaluate", "sky_distill.generate"),
}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_does_not_import_the_ones_downstream_of_it(package):
    wrong = {
        f"{path.name}: {name}"
        for path in (PACKAGE / package).glob("*.py")
        for name in imported(path)
        if name.startswith(FORBIDDEN[package])
    }
    assert not wrong


def test_no_module_imports_a_stage_entry_file():
    wrong = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py")
        for name in imported(path)
        if name.startswith("sky_distill.") and name.endswith(".stage")
    }
    assert not wrong
