"""Files in every public layout, written from the shared Sky-T1 trace fixture."""

from __future__ import annotations

import pytest

from sky_distill.data_sources.layout_examples import read_fixture, write_layout_files
from tests.conftest import FIXTURES

TRACES = FIXTURES / "sky_t1_traces_sample.jsonl"


@pytest.fixture(scope="session")
def fixture_rows():
    if not TRACES.exists():
        pytest.skip(f"{TRACES} is not present")
    return read_fixture(TRACES, 8)


@pytest.fixture(scope="session")
def layout_files(tmp_path_factory, fixture_rows):
    return write_layout_files(tmp_path_factory.mktemp("layouts"), fixture_rows)
