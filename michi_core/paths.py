"""Where Michi keeps user data and caches: platform user dirs, or $MICHI_HOME when set."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "michi"


def data_dir() -> Path:
    """User data (the SQLite database, voices, conversations)."""
    home = os.environ.get("MICHI_HOME")
    path = Path(home) / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Re-creatable files (the dequantized backbone, the tokenizer export).

    $MICHI_CACHE, then $MICHI_HOME/cache, then the platform's user cache dir.
    """
    home = os.environ.get("MICHI_HOME")
    if os.environ.get("MICHI_CACHE"):
        path = Path(os.environ["MICHI_CACHE"])
    elif home:
        path = Path(home) / "cache"
    else:
        path = Path(platformdirs.user_cache_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_path() -> Path:
    return data_dir() / "michi.sqlite3"


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (model files are hundreds of MB)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
