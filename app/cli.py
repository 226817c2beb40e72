"""The `michi` command: the desktop app when run alone, plus subcommands (see `michi --help`)."""

from __future__ import annotations

import argparse
import logging
import sys

from michi_core.cli import add_core_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="michi", description="Michi: a full-duplex voice assistant, local.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command")
    add_core_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        print("The Michi desktop app is not built yet; see `michi --help` for the commands.")
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
