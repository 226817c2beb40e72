"""`michi-train eval codec|model`: evaluate a checkpoint on a corpus's held-out rows.

    michi-train eval codec --checkpoint runs/codec/export --data corpus --limit 50 --run runs/codec
    michi-train eval model --checkpoint runs/duplex/export --data corpus --limit 20

Each writes eval.json and EVAL.md into --out (and the scored audio under audio/).
"""

from __future__ import annotations

from pathlib import Path

EVALUATIONS = {"codec": "resynthesis through the streaming codec: WER, STOI, PESQ, DNSMOS, mel distance, latents",
               "model": "say() WER, voice-cloning similarity, backbone perplexity, duplex turn-taking"}


def add_eval_commands(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint on held-out data")
    kinds = parser.add_subparsers(dest="evaluation", required=True, metavar="WHAT")
    for name, text in EVALUATIONS.items():
        p = kinds.add_parser(name, help=text, description=text)
        p.add_argument("--checkpoint", required=True, metavar="DIR",
                       help="checkpoint directory" + (" (a codec's, or a model's with its codec)" if name == "codec"
                                                      else ""))
        p.add_argument("--data", required=True, metavar="CORPUS", help="corpus folder from `michi-train data`")
        p.add_argument("--limit", type=int, metavar="N", help="at most N held-out items per measure")
        p.add_argument("--out", default=f"runs/eval/{name}", metavar="DIR", help="where eval.json and EVAL.md go")
        p.add_argument("--run", dest="run_dir", metavar="DIR",
                       help="a training run (a stage's --out-dir, or a folder of them): loss curves from its "
                            "TensorBoard logs go into the report")
        p.add_argument("--whisper", default="base", help="'base' (default), 'tiny.en' or a CTranslate2 folder")
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        if name == "codec":
            p.add_argument("--no-dnsmos", dest="dnsmos", action="store_false", help="skip DNSMOS (slow on CPU)")
            p.add_argument("--real", metavar="DIR", help="human recordings in no corpus, each with a .txt transcript "
                                                         "beside it, scored apart; 'arctic' fetches CMU ARCTIC a0009")
        else:
            p.add_argument("--seed", type=int, default=0, help="sampling seed of the engine")
        p.add_argument("--no-audio", dest="keep_audio", action="store_false", help="do not write the scored audio")
        p.set_defaults(func=_run_codec if name == "codec" else _run_model)


def run_codec_eval(checkpoint, data, out, limit=None, run_dir=None, whisper="base", device="cpu", dnsmos=True,
                   keep_audio=True, real=None) -> dict:
    """Evaluate and write the report; returns the report."""
    from .codec_eval import CODEC_LABELS, evaluate_codec
    from .report import write_report

    out = Path(out)
    report = evaluate_codec(Path(checkpoint).resolve(), data, limit, whisper, device, dnsmos,
                            out / "audio" if keep_audio else None, real)
    summary = (f"Checkpoint `{checkpoint}`, corpus `{data}`: {report['utterances']} held-out utterances "
               f"({'/'.join(report['splits'])} splits), each encoded and decoded one frame at a time (the "
               f"streaming path). WER: Whisper {report['whisper']} against the known text, spoken-form words.")
    if report["real_items"]:
        summary += (f" Real human speech in no corpus: {', '.join(item['id'] for item in report['real_items'])} "
                    f"(`{real}`), scored the same way.")
    write_report(out, report, "Codec evaluation", CODEC_LABELS, summary, run_dir)
    return report


def run_model_eval(checkpoint, data, out, limit=None, run_dir=None, whisper="base", device="cpu", seed=0,
                   keep_audio=True) -> dict:
    from .model_eval import MODEL_LABELS, evaluate_model
    from .report import write_report

    out = Path(out)
    report = evaluate_model(checkpoint, data, limit, whisper, device, seed, out / "audio" if keep_audio else None)
    m = report["metrics"]
    summary = (f"Checkpoint `{checkpoint}` (preset {report['preset']}), corpus `{data}`, held-out "
               f"{'/'.join(report['splits'])} splits: {m['say']['sentences']} sentences said, "
               f"{(m['speaker_similarity'] or {}).get('speakers', 0)} voices cloned, "
               f"{m['perplexity']['texts']} texts for perplexity, {(m['duplex'] or {}).get('dialogues', 0)} "
               f"dialogues. WER: Whisper {report['whisper']} against the known text, spoken-form words.")
    write_report(out, report, "Model evaluation", MODEL_LABELS, summary, run_dir)
    return report


def _run_codec(args) -> int:
    report = run_codec_eval(args.checkpoint, args.data, args.out, args.limit, args.run_dir, args.whisper, args.device,
                            args.dnsmos, args.keep_audio, args.real)
    _print_summary(args.out, report)
    return 0


def _run_model(args) -> int:
    report = run_model_eval(args.checkpoint, args.data, args.out, args.limit, args.run_dir, args.whisper, args.device,
                            args.seed, args.keep_audio)
    _print_summary(args.out, report)
    return 0


def _print_summary(out: str, report: dict) -> None:
    import json

    print(json.dumps(report["metrics"], indent=2, default=float))
    print(f"wrote {Path(out) / 'eval.json'} and {Path(out) / 'EVAL.md'}")
