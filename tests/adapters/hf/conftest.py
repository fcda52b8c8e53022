"""Fixtures of the HF adapter tests (helpers live in hf_testlib.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"
