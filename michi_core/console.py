"""What every `michi` command shares: how it is registered, how it fails, and how it prints.

- **One registration pattern.** A command module has `register(commands)`, which adds its
  parsers to an argparse subparsers action and gives each the `func(args) -> exit code` that
  runs it. `michi_core.cli.add_commands` mounts them all; `main(register, prog)` runs one
  module alone (`python -m michi_core.stores.rag.cli docs ...`).
- **One way to fail.** A command raises; `run` turns the errors a user can act on (a bad file,
  a refused checkpoint, a read-only or damaged database, a file system error) into one line on
  stderr and exit code 1, never a traceback.
- **Nothing printed raw.** File names, document titles, voice names and transcripts come from
  outside; `clean` escapes the control characters in them (`\\x1b[2J` would clear the screen,
  a bidi override would reorder the line), so they reach the terminal as visible text.
"""

from __future__ import annotations

import argparse
import logging
import re
import sqlite3
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id cannot name anything

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]")


class CliError(Exception):
    """A command cannot do what was asked; the message says why and what to do."""


def clean(text: object) -> str:
    """`text` safe to print on a terminal: control and bidi characters become visible escapes
    (ESC -> \\x1b, newline -> \\n), everything else is kept."""
    return _CONTROL.sub(_escape, str(text))


def clean_lines(text: object) -> str:
    """Like `clean`, keeping the line breaks of a message that has several lines."""
    return "\n".join(clean(line) for line in str(text).split("\n"))


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def record_id(text: str) -> int:
    """argparse type of a stored record's id (document, voice): a whole number SQLite can hold."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{clean(text)!s} is not an id (a whole number, as listed)")
    return int(text)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that carry a message for the user (imported here, when a command fails)."""
    from michi_core.audio import AudioFileError
    from michi_core.model.config import CheckpointError
    from michi_core.stores.database import StoreError

    return CliError, StoreError, AudioFileError, CheckpointError


def run(args: argparse.Namespace) -> int:
    """Run the command `args` names; a failure a user can act on is one line on stderr, exit 1."""
    name = " ".join(filter(None, ["michi", getattr(args, "command", None), getattr(args, "subcommand", None)]))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        return 130
    except sqlite3.DatabaseError as error:  # damage found after the open-time check passed
        from michi_core.paths import database_path
        from michi_core.stores.database import recovery_advice

        path = database_path()
        print(f"{name}: Michi's database {clean(path)} cannot be used ({clean(error)}). "
              f"{clean_lines(recovery_advice(path))}", file=sys.stderr)
        return 1
    except OSError as error:
        where = f"{clean(error.filename)}: " if error.filename else ""
        print(f"{name}: {where}{clean(error.strerror or error)}", file=sys.stderr)
        return 1
    except Exception as error:
        if isinstance(error, user_errors()):
            print(f"{name}: {clean_lines(error)}", file=sys.stderr)
            return 1
        raise


def open_store(store_class, writing: bool, path=None):
    """A store for a command; raises its problem when it is damaged, or read-only and `writing`."""
    from michi_core.stores.database import StoreDamaged

    store = store_class(path)
    problem = store.problem
    if problem is not None and (writing or isinstance(problem, StoreDamaged)):
        store.close()
        raise problem
    return store


def main(register: Callable[[argparse._SubParsersAction], None], prog: str,
         argv: list[str] | None = None) -> int:
    """Run one command module alone, as `python -m` does."""
    parser = argparse.ArgumentParser(prog=prog)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)
