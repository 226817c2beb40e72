"""The `michi` command: the desktop app when run alone, plus subcommands (see `michi --help`).

PySide6 is imported only when the app or its self-test runs, so `michi info`, `bench` and `chat`
work where Qt is missing (servers, CI images without GL).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from michi_core import console
from michi_core.cli import add_commands
from michi_core.model.config import PRESETS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="michi", description="Michi: a full-duplex voice assistant, local. Run alone, it opens the app.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    app = parser.add_argument_group("the app (when no command is given)")
    app.add_argument("--preset", dest="app_preset", choices=sorted(PRESETS),
                     help="run a preset (untrained heads) instead of the embedded model")
    app.add_argument("--checkpoint", dest="app_checkpoint", help="run this checkpoint directory")
    app.add_argument("--self-test", action="store_true",
                     help="open the window offscreen, talk to the model through a WAV file, print a summary; "
                          "exits non-zero on failure")
    app.add_argument("--input", dest="self_test_input",
                     help="the WAV file the self-test plays as the microphone (default: a synthetic voice)")
    app.add_argument("--seconds", dest="self_test_seconds", type=float, default=4.0,
                     help="how much of the input the self-test plays (default 4)")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def main(argv: list[str] | None = None) -> int:
    if sys.stdout is None or sys.stderr is None:
        # A windowed build (Windows .exe, macOS .app) has no console: print() and logging would
        # fail on None. Their output goes to a log file in the user data dir instead, kept open
        # (line-buffered) for the life of the process.
        from michi_core.paths import data_dir

        try:
            log_file = open(data_dir() / "michi.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        except OSError:  # a read-only data dir: the app still opens (and says why it cannot save)
            log_file = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        sys.stdout = sys.stdout or log_file
        sys.stderr = sys.stderr or log_file
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is not None:
        return console.run(args)
    if args.self_test:
        from app.self_test import run_self_test

        return run_self_test(input_path=args.self_test_input, preset_name=args.app_preset,
                             checkpoint=args.app_checkpoint, seconds=args.self_test_seconds)
    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from app.main import run_app

    return run_app(preset_name=args.app_preset, checkpoint=args.app_checkpoint)


def display_problem() -> str | None:
    """Why the window cannot open here (Linux without a display), said before Qt aborts on it."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("Michi needs a display to open its window, and none is set (no DISPLAY or WAYLAND_DISPLAY).\n"
            "Run it from a desktop session, or on a headless machine: xvfb-run -a michi\n"
            "To check the whole app without a screen: michi --self-test")


if __name__ == "__main__":
    sys.exit(main())
