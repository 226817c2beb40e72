"""`michi-train data ...`: build a corpus folder (manifest + audio) step by step.

    michi-train data synth --hours 1 --out corpus --workers 2
    michi-train data voice --hours 2 --out voice       # one voice, phoneme-timed (the speak stage)
    michi-train data ingest --out corpus --libritts /data/LibriTTS-R
    michi-train data align --out corpus
    michi-train data dialogues --count 500 --out corpus --workers 2
    michi-train data text --count 5000 --out corpus
    michi-train data stats --out corpus

Every command resumes: run it again and it continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os

from .align import DEFAULT_MAX_WER, PACK_SECONDS

DEFAULT_WORKERS = min(2, os.cpu_count() or 1)


def register(stages) -> None:
    data = stages.add_parser("data", help="synthesize, ingest and align training data")
    commands = data.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--out", "--corpus", dest="corpus", required=True, metavar="DIR",
                            help="corpus folder (manifest.sqlite3 + audio/); created if missing")
        parser.set_defaults(run=run)
        return parser

    synth = command("synth", _synth, "synthesize a speech corpus with piper and espeak-ng voices")
    synth.add_argument("--hours", type=float, required=True, help="target hours of synthesized audio")
    synth.add_argument("--voices", nargs="+", metavar="VOICE",
                       help="'piper', 'espeak', 'espeak:<accent>', 'espeak:<accent>+<variant>' "
                            "(default: all)")
    synth.add_argument("--piper-share", type=float, default=0.5, help="share of train utterances by piper")
    synth.add_argument("--text-file", nargs="+", default=[], metavar="FILE",
                       help="also speak sentences from these")
    _add_common(synth, whisper=False)

    voice = command("voice", _voice, "one natural voice (piper joe) with its own phoneme timings: what "
                                     "`michi-train speak` learns to say")
    voice.add_argument("--hours", type=float, required=True, help="target hours of usable audio")
    _add_common(voice, whisper=False)

    ingest = command("ingest", _ingest, "add a real corpus: LibriTTS(-R) layout or a folder of audio + .txt")
    source = ingest.add_mutually_exclusive_group(required=True)
    source.add_argument("--libritts", metavar="ROOT", help="LibriTTS / LibriTTS-R root (or one subset)")
    source.add_argument("--folder", metavar="ROOT", help="audio files with same-name .txt transcripts")
    ingest.add_argument("--speaker", help="speaker name for --folder (default: each file's folder name)")
    ingest.add_argument("--max-seconds", type=float, default=20.0, help="longer recordings are cut at pauses")
    _add_common(ingest, workers=False, seed=False)

    align = command("align", _align, "Whisper word timings for every unaligned utterance; drop mismatches")
    align.add_argument("--pack-seconds", type=float, default=PACK_SECONDS,
                       help="audio per Whisper call when packing short utterances (0: one per call)")
    _add_common(align, seed=False)

    dialogues = command("dialogues", _dialogues, "two-channel dialogues with overlaps and interruptions")
    dialogues.add_argument("--count", type=int, required=True, help="number of dialogues (kept + dropped)")
    dialogues.add_argument("--user-voices", nargs="+", metavar="VOICE", help="as --voices (default: espeak)")
    dialogues.add_argument("--assistant-voice", default="piper:joe", help="the assistant's one voice")
    dialogues.add_argument("--retrieval-share", type=float, default=0.5, help="share of retrieval exchanges")
    dialogues.add_argument("--interrupt-prob", type=float, default=0.25)
    dialogues.add_argument("--backchannel-prob", type=float, default=0.4)
    _add_common(dialogues)

    text = command("text", _text, "text-only samples that keep the backbone's language ability")
    text.add_argument("--count", type=int, required=True, help="number of generated passages")
    text.add_argument("--text-file", nargs="+", default=[], metavar="FILE",
                      help="also add these, cut in passages")
    text.add_argument("--seed", type=int, default=0)

    stats = command("stats", _stats, "counts, hours, splits and filter statistics of a corpus")
    stats.add_argument("--json", action="store_true", help="print JSON only")


def _add_common(parser: argparse.ArgumentParser, whisper: bool = True, workers: bool = True,
                seed: bool = True) -> None:
    if workers:
        parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="worker processes")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="the corpus's seed: same seed, same data")
    if whisper:
        parser.add_argument("--whisper", default="base",
                            help="'base' (default), 'tiny.en' (faster) or a CTranslate2 Whisper folder")
        parser.add_argument("--max-wer", type=float, default=DEFAULT_MAX_WER,
                            help="drop utterances whose ASR word error rate is above this")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _print(summary: dict) -> None:
    print(json.dumps(summary, indent=2, default=float))


def _synth(args) -> int:
    from .synth import build_synth

    _print(build_synth(args.corpus, args.hours, voices=args.voices, workers=args.workers, seed=args.seed,
                       piper_share=args.piper_share, text_files=args.text_file, progress=args.progress))
    return 0


def _voice(args) -> int:
    from .voice_corpus import build_voice_corpus

    _print(build_voice_corpus(args.corpus, args.hours, workers=args.workers, seed=args.seed))
    return 0


def _ingest(args) -> int:
    from .corpora import ingest, iter_folder, iter_libritts

    utterances = iter_libritts(args.libritts) if args.libritts else iter_folder(args.folder, args.speaker)
    _print(ingest(args.corpus, utterances, max_seconds=args.max_seconds, whisper=args.whisper,
                  max_wer=args.max_wer, progress=args.progress))
    return 0


def _align(args) -> int:
    from .align import build_alignment

    _print(build_alignment(args.corpus, whisper=args.whisper, max_wer=args.max_wer, workers=args.workers,
                           pack_seconds=args.pack_seconds, progress=args.progress))
    return 0


def _dialogues(args) -> int:
    from .dialogues import DialogueOptions, build_dialogues

    options = DialogueOptions(retrieval_share=args.retrieval_share, interrupt_prob=args.interrupt_prob,
                              backchannel_prob=args.backchannel_prob, max_wer=args.max_wer)
    _print(build_dialogues(args.corpus, args.count, user_voices=args.user_voices,
                           assistant_voice=args.assistant_voice, workers=args.workers, seed=args.seed,
                           whisper=args.whisper, options=options, progress=args.progress))
    return 0


def _text(args) -> int:
    from .text_only import build_text_only

    _print(build_text_only(args.corpus, args.count, seed=args.seed, text_files=args.text_file))
    return 0


def _stats(args) -> int:
    from michi_core.model.config import CodecConfig

    from .manifest import Manifest

    _print(Manifest(args.corpus).stats(CodecConfig().frame_rate))
    return 0
