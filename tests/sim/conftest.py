"""Fixtures of the simulation tests (helpers live in ``simutil`` and ``tests/support``)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO / ".." / "shared" / "data"
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def data_dir():
    if not (DATA / "bnn-pynq").is_dir():
        pytest.fail(f"shared data folder {DATA} is missing")
    return DATA
