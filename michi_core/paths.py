"""Where Michi keeps user data and caches: platform user dirs, or $MICHI_HOME when set."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import platformdirs

APP_NAME = "michi"


def data_dir() -> Path:
    """User data (the SQLite database, voices, conversations), private to the user (0700).

    Created when missing; when it cannot be (a read-only home), the path is returned anyway and
    the stores say what is wrong when they open.
    """
    home = os.environ.get("MICHI_HOME")
    path = Path(home) / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))
    try:
        make_private(path, create_folder=True)
    except OSError:
        pass
    return path


def make_private(path: Path, create_folder: bool = False) -> None:
    """Give `path` to its owner alone (a folder 0700, a file 0600: recordings and calls are
    personal; older versions left them 0755/0644) by taking away the group's and others' bits.
    A missing file is skipped; a missing folder is created 0700 when `create_folder` (OSError when it
    cannot be). Only what we own is changed; a read-only file system is left as it is."""
    if create_folder and not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 and info.st_uid == os.getuid():
        try:
            path.chmod(mode & ~0o077)  # the owner's own bits stay: a file made read-only stays so
        except OSError:
            pass


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
