"""Shared test set-up: user data in a temporary MICHI_HOME; a persistent cache for the
dequantized backbone so that only the first run pays the ~20 s GGUF conversion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MICHI_CACHE", str(REPO / ".pytest_cache" / "michi-cache"))


@pytest.fixture(autouse=True)
def michi_home(tmp_path, monkeypatch):
    """Every test gets its own user data dir: nothing leaks between tests or into ~/.local."""
    home = tmp_path / "michi-home"
    monkeypatch.setenv("MICHI_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def small_model():
    """The `small` preset with the real SmolLM2 backbone (loaded once per test session)."""
    from michi_core.config import small
    from michi_core.model import MichiModel

    return MichiModel(small()).eval()
