"""`michi-train`: one subcommand per training stage.

    michi-train data synth --hours 1 --out corpus --workers 2
    michi-train data align --out corpus
    michi-train codec --data corpus
    michi-train speech --data corpus     (then joint, duplex)
    michi-train eval codec --checkpoint runs/codec/export --data corpus     (or eval model)
    michi-train reproduce --preset tiny --out repro     (all of the above in one go)
    michi-train ship codec --checkpoint runs/codec/export --eval runs/eval/codec     (into assets/)

Each stage module exposes `register(subparsers)`, which adds its parser and sets `run` (data) or
`func` (model stages, eval, reproduce) on the parsed namespace. `data`, `eval` and `reproduce`
register without importing anything heavy: torch, Whisper and the synthesizers load only when a
command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from training.data import commands as data_commands
from training.eval.commands import add_eval_commands
from training.reproduce import add_reproduce_command
from training.ship import add_ship_command
from training.stages.codec import add_codec_command
from training.stages.speak import add_speak_command
from training.stages.speech import add_speech_commands


class _Stages:
    """The model stages (codec, speech, joint, duplex), eval and reproduce in the same `register`
    shape as `data`."""

    @staticmethod
    def register(stages) -> None:
        add_codec_command(stages)
        add_speech_commands(stages)
        add_speak_command(stages)
        add_eval_commands(stages)
        add_reproduce_command(stages)
        add_ship_command(stages)


STAGES = (data_commands, _Stages)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="michi-train", description="Train Michi, stage by stage.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage in STAGES:
        stage.register(stages)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    run = getattr(args, "run", None) or args.func
    return run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
