"""`michi voices`: add a voice from an audio file, list the stored voices, remove them.

It works on the same database as the Voices panel (`paths.database_path()`, or under
$MICHI_HOME). It is a command module (`michi_core.console`): `michi_core.cli` mounts its
`register`; it also runs alone as `python -m michi_core.stores.voices_cli voices ...`. No model
is loaded: a voice is encoded for a model the first time that model speaks with it. Names and
transcripts are printed through `console.clean`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from michi_core.console import CliError, clean, open_store, record_id
from michi_core.console import main as run_alone
from michi_core.stores.voices import STORE_RATE, VoiceError, VoiceStore, load_voice_file


def cmd_add(args: argparse.Namespace) -> int:
    with open_store(VoiceStore, writing=True) as store:  # before decoding: a read-only store fails at once
        wave, report = load_voice_file(args.file)
        if not report.ok and not args.force:
            problems = "".join(f"\n  - {problem}" for problem in report.problems)
            raise CliError(f"{clean(args.file)} is not a good voice sample:{problems}\n"
                           "record it again, or add it anyway with --force")
        try:
            voice = store.add(args.name, wave, STORE_RATE, transcript=args.transcript or "",
                              source=Path(args.file).name)
        except VoiceError as error:
            raise CliError(str(error)) from None
    print(f"added #{voice.id} '{clean(voice.name)}': {voice.duration_s:.1f} s ({report.summary()})")
    if voice.duration_s < report.metrics["source_duration_s"] - 1.0:
        print(f"kept the best {voice.duration_s:.1f} s of {report.metrics['source_duration_s']:.1f} s"
              + (": the transcript must be what is said in that part" if voice.transcript else ""))
    if not voice.transcript:
        print("tip: a transcript (--transcript) of what is said helps the model clone the voice")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with open_store(VoiceStore, writing=False) as store:
        voices = store.voices()
    if not voices:
        print("no voices yet: add one with `michi voices add FILE --name NAME`")
        return 0
    print(f"{'ID':>5}  {'SECONDS':>7}  {'ADDED':<10}  NAME")
    for voice in voices:
        print(f"{voice.id:>5}  {voice.duration_s:>7.1f}  {clean(voice.created_at[:10]):<10}  {clean(voice.name)}")
        if voice.transcript:
            print(f"{'':>29}“{clean(voice.transcript)}”")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    missing = []
    with open_store(VoiceStore, writing=True) as store:
        for voice_id in args.ids:
            if store.remove(voice_id):
                print(f"removed #{voice_id}")
            else:
                missing.append(voice_id)
    for voice_id in missing:
        print(f"no voice #{voice_id} (see `michi voices list`)", file=sys.stderr)
    return 1 if missing else 0


def register(commands) -> None:
    """`voices` and its subcommands (see `michi_core.console`)."""
    voices = commands.add_parser("voices", help="voices Michi can speak in (cloned from a recording)")
    subcommands = voices.add_subparsers(dest="subcommand", required=True)

    p = subcommands.add_parser("add", help="add a voice from an audio file (wav/flac/ogg; the best ≤ 15 s of "
                                           "speech is kept)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", required=True, help="what to call the voice (unique)")
    p.add_argument("--transcript", help="what is said in the file (helps the cloning)")
    p.add_argument("--force", action="store_true", help="store it even if the recording checks fail")
    p.set_defaults(func=cmd_add)

    p = subcommands.add_parser("list", help="the stored voices")
    p.set_defaults(func=cmd_list)

    p = subcommands.add_parser("remove", help="delete voices")
    p.add_argument("ids", nargs="+", type=record_id, metavar="ID")
    p.set_defaults(func=cmd_remove)


def main(argv: list[str] | None = None) -> int:
    return run_alone(register, "python -m michi_core.stores.voices_cli", argv)


if __name__ == "__main__":
    sys.exit(main())
