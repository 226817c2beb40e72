"""Listen benchmark: how fast and how well the user's words reach the session, and what the
recognizer costs the 80 ms step.

    .venv/bin/python benchmarks/listen_bench.py [--models base tiny.en] [--step-threads 1] [--no-step]

One stream of user speech (the real CMU ARCTIC recording, piper and espeak sentences, each with
silence around it, ~61 s) is played at the pace of a live call: frame i is handed over at
t0 + i * 80 ms (or later, when the step before it ran late), the session steps on it (the `small`
preset, pretrained backbone, auto dtype; --no-step: the hearing alone), and the hearing is polled
every frame. Runs: no hearing (the step alone), then the hearing with each model.

- user word latency: the frame holding the end of a spoken word is handed over -> the frame step
  that polled the word. Word ends are espeak's own boundaries for espeak sentences, and offline
  Whisper base word times (on the clean clip) for the recording and piper;
- WER of the words heard against the known text, by kind of voice (normalized spoken forms);
- step ms p50/p95 with and without the recognizer running, and how many frames ran late.

The machine is shared: the JSON records the load average, and numbers taken on a loaded machine
say so. Writes benchmarks/results/listen_<timestamp>.json with the machine info.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from a checkout, installed or not

from michi_core.audio import load_audio
from michi_core.session.bench import machine_info, percentile, results_dir
from michi_core.session.hearing import HeardWord, Hearing, HearingSettings

RATE = 24_000
FRAME = 1920
FRAME_S = FRAME / RATE
ARCTIC_TEXT = "He turned sharply, and faced Gregson across the table."
PIPER_SENTENCES = [
    "Could you tell me what the weather will be like tomorrow morning?",
    "Please remind me to call my sister at six o'clock tonight.",
    "What is the capital city of Australia and how many people live there?",
    "Can you summarize the document I uploaded about solar panels?",
    "I left my keys on the kitchen table next to the blue notebook.",
]
ESPEAK_SENTENCES = [
    ("espeak:en-us+m3", "How long does it take to boil an egg?"),
    ("espeak:en-gb-x-rp+f2", "Set a timer for twenty minutes, please."),
    ("espeak:en-us+m1", "My flight to Berlin leaves on Thursday afternoon."),
    ("espeak:en+f3", "Which of these two laptops has the better battery?"),
    ("espeak:en-us-nyc+m2", "Turn the music down a little bit."),
]
LEAD_S, TAIL_S = 1.0, 1.5  # silence before and after each clip: every utterance closes


@dataclass
class Clip:
    kind: str  # "real", "piper" or "espeak"
    text: str
    audio: np.ndarray  # (n,) at RATE
    word_ends: list[float]  # seconds into the clip, one per word of `text`


def comparable_words(text: str) -> list[str]:
    from training.data.normalize import comparison_words

    return [w for word in text.split() for w in comparison_words(word)]


def whisper_word_ends(audio: np.ndarray, text: str, aligner) -> list[float]:
    """End of each known word in a clean clip, from offline Whisper base word times."""
    from training.data.align import align_text

    alignment = align_text(text, aligner.transcribe(audio, RATE))
    return [end for _, _, end in alignment.words]


def build_clips() -> list[Clip]:
    from training.data.align import Aligner
    from training.data.voices import VoiceBank
    from training.eval.real_speech import fetch_arctic

    aligner = Aligner("base", threads=1)
    bank = VoiceBank(RATE, threads=1)
    rng = random.Random(7)
    clips = []
    arctic = load_audio(fetch_arctic() / "arctic_a0009.wav", RATE)
    clips.append(Clip("real", ARCTIC_TEXT, arctic, whisper_word_ends(arctic, ARCTIC_TEXT, aligner)))
    for text in PIPER_SENTENCES:
        audio = bank.speak("piper:joe", text, rng).audio
        clips.append(Clip("piper", text, audio, whisper_word_ends(audio, text, aligner)))
    for speaker, text in ESPEAK_SENTENCES:
        speech = bank.speak(speaker, text, rng)
        clips.append(Clip("espeak", text, speech.audio, [w.end for w in speech.words]))
    return clips


def stream_of(clips: list[Clip]) -> tuple[np.ndarray, list[tuple[int, float, str]]]:
    """All clips with silence around each, and (clip index, stream time of the word's end, word)."""
    pieces, words, t = [], [], 0.0
    for i, clip in enumerate(clips):
        lead, tail = np.zeros(int(LEAD_S * RATE), np.float32), np.zeros(int(TAIL_S * RATE), np.float32)
        start = t + LEAD_S
        words += [(i, start + end, word) for word, end in zip(clip.text.split(), clip.word_ends)]
        pieces += [lead, clip.audio, tail]
        t += (len(lead) + len(clip.audio) + len(tail)) / RATE
    audio = np.concatenate(pieces)
    return np.pad(audio, (0, -len(audio) % FRAME)), words


def run_stream(session, audio: np.ndarray, hearing: Hearing | None) -> dict:
    """Play the stream at real-time pace through the session (None: no step, the hearing alone);
    poll the hearing every frame."""
    n = len(audio) // FRAME
    if session is not None:
        session.reset()
    if hearing is not None:
        hearing.reset()
    step_ms, late, heard, utterances = [], 0, [], []
    fed_at = np.zeros(n)  # when each frame was handed over (its due time, or later when the step lags)
    started = time.perf_counter()
    for i in range(n):
        due = started + (i + 1) * FRAME_S  # the mic hands frame i over once it is complete
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        else:
            late += 1
        frame = audio[i * FRAME:(i + 1) * FRAME]
        fed_at[i] = time.perf_counter() - started
        if hearing is not None:
            hearing.feed(frame)
            for item in hearing.poll():
                now = time.perf_counter() - started
                (heard if isinstance(item, HeardWord) else utterances).append((now, item))
        if session is not None:
            step_ms.append(session.step(frame).timings.total_ms)
    if hearing is not None:
        hearing.wait_idle(30)
        for item in hearing.poll():
            now = time.perf_counter() - started
            (heard if isinstance(item, HeardWord) else utterances).append((now, item))
    return {"step_ms": step_ms, "late_frames": late, "frames": n, "heard": heard, "utterances": utterances,
            "fed_at": fed_at}


def score(clips: list[Clip], words: list[tuple[int, float, str]], heard: list[tuple[float, HeardWord]],
          fed_at: np.ndarray) -> dict:
    """WER by kind, and the latency of every heard word matched to a spoken one: from the moment
    the frame holding the word's end was handed over (its due time when the step keeps up) to the
    frame step that polled the word."""
    import jiwer

    spoken = [(clip, end, w) for clip, end, word in words for w in comparable_words(word)]
    said = [(now, w, c) for now, w in heard for c in comparable_words(w.text)]
    matcher = difflib.SequenceMatcher(a=[w for _, _, w in spoken], b=[c for _, _, c in said], autojunk=False)
    latencies = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and a1 - a0 == b1 - b0):
            latencies += [said[b0 + k][0] - fed_at[min(int(spoken[a0 + k][1] / FRAME_S), len(fed_at) - 1)]
                          for k in range(a1 - a0)]
    by_kind: dict[str, tuple[list[str], list[str]]] = {}
    for i, clip in enumerate(clips):
        # Each heard word goes to the clip whose time span holds its audio.
        ref, hyp = by_kind.setdefault(clip.kind, ([], []))
        ref.append(" ".join(comparable_words(clip.text)))
        span = [end for c, end, _ in words if c == i]
        lo, hi = span[0] - 2.0, span[-1] + 1.0
        hyp.append(" ".join(c for _, w in heard if lo <= w.end_s <= hi for c in comparable_words(w.text)))
    wer = {kind: round(jiwer.wer(ref, hyp), 4) for kind, (ref, hyp) in by_kind.items()}
    wer["all"] = round(jiwer.wer([r for ref, _ in by_kind.values() for r in ref],
                                 [h for _, hyp in by_kind.values() for h in hyp]), 4)
    return {
        "wer": wer,
        "words_spoken": len(spoken),
        "words_matched": len(latencies),
        "user_word_latency_s": {"p50": round(percentile(latencies, 50), 3), "p95": round(percentile(latencies, 95), 3),
                                "max": round(max(latencies), 3)} if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--step-threads", type=int, default=1, help="torch threads of the step")
    parser.add_argument("--recognizer-threads", type=int, default=1, help="CTranslate2 threads of Whisper")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--no-step", action="store_true", help="the hearing alone, without the model's step")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from michi_core.model.model import load_model
    from michi_core.session.engine import DuplexSession

    torch.set_num_threads(args.step_threads)
    torch.manual_seed(0)
    clips = build_clips()
    audio, words = stream_of(clips)
    session = None if args.no_step else DuplexSession(load_model(None, args.preset), device="cpu", dtype="auto")
    load_before = machine_info(torch.device("cpu")).get("load_average_1m")
    runs = []
    for model in ([] if args.no_step else [None]) + args.models:
        hearing = None
        if model is not None:
            hearing = Hearing(HearingSettings(model=model, cpu_threads=args.recognizer_threads)).start()
            hearing.feed(np.zeros(FRAME, np.float32))  # load the model before the clock starts
            hearing.wait_idle(120)
        result = run_stream(session, audio, hearing)
        run = {"recognizer": model or "none", "late_frames": result["late_frames"], "frames": result["frames"]}
        if result["step_ms"]:
            run["step_ms"] = {"p50": round(percentile(result["step_ms"], 50), 2),
                              "p95": round(percentile(result["step_ms"], 95), 2)}
        if hearing is not None:
            run.update(score(clips, words, result["heard"], result["fed_at"]))
            run["passes"] = {"count": len(hearing.pass_seconds),
                             "p50_s": round(percentile(hearing.pass_seconds, 50), 3),
                             "p95_s": round(percentile(hearing.pass_seconds, 95), 3)}
            run["restarts"] = hearing.restarts
            run["utterances"] = [u.text for _, u in result["utterances"]]
            hearing.stop()
        runs.append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "utterances"}))
    report = {
        "benchmark": "listen_bench",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(torch.device("cpu")) | {"load_average_1m_at_start": load_before},
        "settings": {"preset": None if args.no_step else args.preset, "step_threads": args.step_threads,
                     "process_nice": os.nice(0),  # < 0: run ahead of the machine's other (niced) work
                     "recognizer_threads": args.recognizer_threads, "hearing": vars(HearingSettings()),
                     "clips": [{"kind": c.kind, "text": c.text, "seconds": round(len(c.audio) / RATE, 2)}
                               for c in clips],
                     "stream_seconds": round(len(audio) / RATE, 1)},
        "runs": runs,
    }
    path = Path(args.json) if args.json else results_dir() / f"listen_{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
