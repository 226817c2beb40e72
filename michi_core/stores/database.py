"""Michi's one SQLite database (`paths.database_path()`), shared by the stores of conversations,
documents and voices: each store is a `SqliteStore` with its own tables.

A store object belongs to the thread that opened it (sqlite3's rule). WAL lets readers go on
while another connection commits, and the generous busy timeout covers a large document being
committed by the indexer thread or the CLI at the same moment.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Self

import sqlite_utils

from michi_core.paths import database_path

BUSY_TIMEOUT_S = 30


class SqliteStore:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else database_path()
        self.db = sqlite_utils.Database(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S))
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.enable_wal()
        self._create_schema()

    def _create_schema(self) -> None:
        """Create the store's tables if they are missing (and migrate older ones)."""
        raise NotImplementedError

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
