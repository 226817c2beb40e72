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


@pytest.fixture
def one_torch_thread():
    """The tiny model's ops are microseconds: on a shared 2-core machine a second intra-op thread
    only adds synchronisation (a step takes 5x longer). Modules of tiny-model tests use this."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def voiced_tiny_model():
    """The tiny preset, its speak head given the conditioning a trained one has: at init AdaLN-Zero
    makes the head ignore the backbone entirely, so no voice prompt could change the audio."""
    import torch

    from michi_core.model.config import tiny
    from michi_core.model.model import MichiModel

    torch.manual_seed(0)
    model = MichiModel(tiny()).eval()
    with torch.no_grad():
        for name, parameter in model.flow.named_parameters():
            if "modulation" in name:
                parameter.normal_(0.0, 0.5)
    return model


@pytest.fixture(scope="session")
def small_model():
    """The `small` preset with the real SmolLM2 backbone (loaded once per test session)."""
    from michi_core.model.config import small
    from michi_core.model.model import MichiModel

    return MichiModel(small()).eval()
