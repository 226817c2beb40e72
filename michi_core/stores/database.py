"""Michi's one SQLite database (`paths.database_path()`), shared by the stores of conversations,
documents and voices: each store is a `SqliteStore` with its own tables.

A store object belongs to the thread that opened it (sqlite3's rule). WAL lets readers go on
while another connection commits.

Every write goes through `write()`, a `BEGIN IMMEDIATE` transaction: it takes the write lock
before it reads anything. A deferred `BEGIN` that reads and then writes cannot wait for the lock
in WAL mode (another writer may have committed since its read, so SQLite refuses the upgrade at
once with "database is locked", busy timeout or not): two `michi docs add` runs lost files that
way. Waiting at the `BEGIN` instead is what the busy timeout is for.

Opening never writes into a file it has doubts about and never deletes one:
- a file that is not SQLite, or fails `PRAGMA quick_check`, is *damaged*: the store works on an
  empty in-memory stand-in, `problem` says what is wrong and how to recover, writes raise it;
- a file (or folder) that cannot be written is opened read-only: reads work, writes raise;
- a folder that cannot be created gives an empty stand-in and the reason.
The user's data are personal (recordings, calls): the database and its -wal/-shm are 0600.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import sqlite_utils

from michi_core.paths import database_path, make_private

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30
SQLITE_HEADER = b"SQLite format 3\x00"
QUICK_CHECK_MAX_ERRORS = 5  # enough to tell the user what is wrong; the check stops there

# quick_check reads every page (measured: 0.18 s for a 400 MB database of 70 min of calls, from the
# page cache; a cold disk adds its read time): once per database per process is enough, the app
# opens a store per thread and per call.
_checked: dict[Path, str | None] = {}
_checked_lock = threading.Lock()


class StoreError(Exception):
    """The database cannot be used as asked; the message says why and what to do."""


class StoreDamaged(StoreError):
    """The file is not a healthy SQLite database. Michi leaves it as it is."""


class StoreReadOnly(StoreError):
    """The database (or its folder) cannot be written: reading works, saving does not."""


def recovery_advice(path: Path) -> str:
    return (f"Michi did not change the file and will not write to it. To save what it holds, close "
            f"Michi and run:\n  sqlite3 '{path}' .recover | sqlite3 '{path}.recovered'\nthen move "
            f"'{path}' aside and rename the .recovered file to {path.name}. Or move the damaged file "
            "aside to start with an empty database.")


def _damaged(path: Path, detail: str) -> StoreDamaged:
    return StoreDamaged(f"Michi's database {path} is damaged ({detail}). {recovery_advice(path)}")


def quick_check(path: Path) -> str | None:
    """None when `path` looks like a healthy SQLite database (or does not exist yet), else what is
    wrong. Read-only: it never writes to the file, whatever it finds."""
    try:
        with open(path, "rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"it cannot be read: {error.strerror}"
    if not header:
        return None  # an empty file is a database that was never written
    if header != SQLITE_HEADER:
        return "it is not an SQLite database: its first bytes are something else"
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as error:
        return str(error)
    try:
        rows = connection.execute(f"PRAGMA quick_check({QUICK_CHECK_MAX_ERRORS})").fetchall()
    except sqlite3.OperationalError as error:
        if "readonly" in str(error) or "unable to open" in str(error):
            return None  # a WAL file we may not touch: the read-only open below decides
        return str(error)
    except sqlite3.DatabaseError as error:
        return str(error)
    finally:
        connection.close()
    problems = [row[0] for row in rows if row[0] != "ok"]
    return "; ".join(problems) if problems else None


def _checked_once(path: Path) -> str | None:
    key = path.resolve()
    with _checked_lock:
        if key not in _checked:
            _checked[key] = quick_check(path)
        return _checked[key]


def _writable(path: Path) -> bool:
    folder = path.parent
    if path.exists():
        return os.access(path, os.W_OK) and os.access(folder, os.W_OK)
    return os.access(folder, os.W_OK)


class SqliteStore:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else database_path()
        self.problem: StoreError | None = None  # set when the store cannot be written (see module doc)
        self.db = self._open()

    # -- opening -------------------------------------------------------------------------------
    def _open(self) -> sqlite_utils.Database:
        path = self.path
        try:
            if not path.parent.is_dir():  # Michi's data folder is made private by paths.data_dir()
                make_private(path.parent, create_folder=True)
        except OSError as error:
            self.problem = StoreReadOnly(
                f"Michi cannot create its data folder {path.parent} ({error.strerror}): nothing can be "
                "saved. Make the folder's parent writable, or set MICHI_HOME to a folder you can write.")
            return self._stand_in()
        damage = _checked_once(path)
        if damage is not None:
            self.problem = _damaged(path, damage)
            log.debug("not writing to the damaged database %s (%s)", path, damage)
            return self._stand_in()
        if not _writable(path):
            return self._open_read_only(path)
        try:
            _create_private(path)
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
            db = sqlite_utils.Database(connection)
            db.execute("PRAGMA foreign_keys = ON")
            if db.journal_mode != "wal":
                db.enable_wal()
            self.db = db
            with self.write():
                self._create_schema()
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise StoreError(f"Michi's database {path} stayed locked by another program for "
                                 f"{BUSY_TIMEOUT_S} s: try again") from error
            self.problem = _damaged(path, str(error))
            return self._stand_in()
        for suffix in ("-wal", "-shm"):  # SQLite gives them the database's mode; older ones may be 0644
            make_private(Path(f"{path}{suffix}"))
        return db

    def _open_read_only(self, path: Path) -> sqlite_utils.Database:
        self.problem = StoreReadOnly(
            f"Michi's database {path} (or its folder) is read-only: Michi can show what it holds but "
            "cannot save anything. Make it writable (chmod u+w) to save again.")
        if not path.exists() or path.stat().st_size == 0:
            return self._stand_in()
        # mode=ro needs the -shm file to exist or be creatable; in a read-only folder only the
        # immutable open works (it skips the WAL, so very recent commits may be missing).
        for query in ("mode=ro", "immutable=1"):
            try:
                connection = sqlite3.connect(f"{path.absolute().as_uri()}?{query}", uri=True,
                                             timeout=BUSY_TIMEOUT_S)
                db = sqlite_utils.Database(connection)
                missing = self._expected_tables() - set(db.table_names())
                if not missing:
                    return db
                connection.close()
                return self._stand_in()  # a database from before these tables existed: nothing to read
            except sqlite3.DatabaseError:
                continue
        return self._stand_in()

    def _expected_tables(self) -> set[str]:
        stand_in = self._stand_in()
        tables = set(stand_in.table_names())
        stand_in.close()
        return tables

    def _stand_in(self) -> sqlite_utils.Database:
        """An empty in-memory database with this store's tables: reads find nothing, writes refuse."""
        db = sqlite_utils.Database(sqlite3.connect(":memory:"))
        real, self.db = getattr(self, "db", None), db
        problem, self.problem = self.problem, None
        with self.write():
            self._create_schema()
        self.db, self.problem = real, problem
        return db

    def _create_schema(self) -> None:
        """Create the store's tables if they are missing (and migrate older ones); runs in write()."""
        raise NotImplementedError

    # -- writing -------------------------------------------------------------------------------
    @property
    def writable(self) -> bool:
        return self.problem is None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction that holds the write lock from its first statement (see above).

        Nested calls join the outer transaction. Raises `problem` when the store cannot be
        written, before anything is attempted.
        """
        if self.problem is not None:
            raise self.problem
        connection = self.db.conn
        if connection.in_transaction:
            with self.db.atomic():  # a savepoint inside ours
                yield self.db
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        try:
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644 minus the umask); an
    existing one that others may read is made private."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        make_private(path)
    else:
        os.close(descriptor)


def describe(path: Path | str | None = None) -> str | None:
    """What is wrong with Michi's database for saving (damaged, read-only, no folder), or None.
    Read-only: this is what the app says at start and what `michi --self-test` checks."""
    path = Path(path) if path is not None else database_path()
    try:
        folder_mode = path.parent.stat().st_mode
    except FileNotFoundError:
        folder_mode = None
    damage = _checked_once(path)
    if damage is not None:
        return str(_damaged(path, damage))
    if folder_mode is not None and not stat.S_ISDIR(folder_mode):
        return f"Michi's data folder {path.parent} is not a folder"
    if folder_mode is not None and not _writable(path):
        return (f"Michi's database {path} (or its folder) is read-only: conversations, documents and "
                "voices cannot be saved. Make it writable (chmod u+w) to save again.")
    return None
