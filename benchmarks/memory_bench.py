"""Memory benchmark: peak RSS of `michi docs add`, `michi codec` and `michi chat` against input length.

    .venv/bin/python benchmarks/memory_bench.py [--cases ingest,codec,chat] [--text-mb 1,30,90]
        [--audio-s 60,3600] [--chat-audio-s 60,3600] [--time-limit 1800] [--real-embedder-s 300]

Each case runs the real command in a child process (its own MICHI_HOME in a temporary folder)
and samples the child's RSS twice a second together with how far it got (seconds of audio
written to the output file; for ingestion, the progress lines on its stderr), then takes the
child's peak RSS from the kernel (wait4). A run that passes --time-limit is stopped and recorded
as partial: the timeline still shows whether memory grows with the input.

Ingestion embeds with a stand-in embedder of MiniLM's shape (384-d) so that 30 and 90 MB finish
(MiniLM embeds ~10 chunks/s on 2 cores: 30 MB is ~80 min of embedding); one more run with the
real MiniLM on the largest text for --real-embedder-s seconds shows what the model adds (a
constant: the model and one batch). Chat uses the tiny preset (the memory per frame does not
depend on the model's size; its context window is bounded by design). Codec uses the tiny
preset's codec by default (--codec-checkpoint for another): the streaming path is the same.
Writes benchmarks/results/memory_<timestamp>.json with the machine and its load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from a checkout, installed or not

from michi_core.session.bench import machine_info

RESULTS = REPO / "benchmarks" / "results"
RATE = 24_000
SAMPLE_S = 0.5

STAND_IN_ADD = textwrap.dedent("""
    import sys
    import numpy as np
    import michi_core.stores.rag.cli as cli
    import michi_core.stores.rag.embedder as embedder

    class StandInEmbedder:  # MiniLM's shape and token counts, without its compute
        name, dim, max_tokens = "stand-in-384", 384, 256

        def __init__(self):
            self.real = embedder.MiniLMEmbedder()

        def count_tokens(self, texts):
            return self.real.count_tokens(texts)  # the real tokenizer: chunking is measured as it is

        def embed(self, texts):
            return np.full((len(texts), self.dim), 1 / np.sqrt(self.dim), np.float32)

    embedder.default_embedder = StandInEmbedder
    cli.PROGRESS_LOG_S = 5.0
    sys.exit(cli.main(["docs", "add", sys.argv[1]]))
""")


def write_text(path: Path, megabytes: float) -> Path:
    """Plain prose-like text (varied sentences, paragraphs), `megabytes` long."""
    rng = np.random.default_rng(0)
    words = ["pears", "crates", "hall", "inventory", "shipment", "invoice", "the", "a", "of", "to", "and", "in", "on", "for", "with", "driver", "morning", "evening", "warehouse", "north", "south", "dock", "forklift", "label", "pallet", "customer", "order"]  # noqa: E501
    with open(path, "w", encoding="utf-8") as file:
        while file.tell() < megabytes * 1e6:
            for _ in range(int(rng.integers(2, 7))):
                sentence = " ".join(rng.choice(words, size=int(rng.integers(6, 18))))
                file.write(sentence.capitalize() + f" ({int(rng.integers(0, 10**6))}). ")
            file.write("\n\n")
    return path


def write_speech_like(path: Path, seconds: float) -> Path:
    """A 16 kHz WAV (so it is resampled on the way in) of voiced syllables with pauses, written
    in blocks: the benchmark itself never holds an hour of audio."""
    rate = 16_000
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        block = 10 * rate
        for start in range(0, int(seconds * rate), block):
            t = (start + np.arange(min(block, int(seconds * rate) - start))) / rate
            voice = np.sin(2 * np.pi * 140 * t) * np.clip(np.sin(2 * np.pi * 2 * t), 0, 1) * ((t % 3) < 1.8)
            out.write((0.3 * voice).astype(np.float32))
    return path


def codec_checkpoint(choice: str, scratch: Path) -> Path:
    if choice != "tiny":
        return Path(choice)
    folder = scratch / "tiny-checkpoint"
    if not folder.exists():
        from michi_core.model.config import tiny
        from michi_core.model.model import MichiModel

        torch.manual_seed(0)
        MichiModel(tiny()).save_pretrained(folder)
    return folder


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_case(name: str, argv: list[str], env: dict, time_limit: float, progress) -> dict:
    """Run a child, sampling (seconds, RSS MB, progress) until it ends or passes time_limit."""
    started = time.monotonic()
    stderr_path = Path(env["MICHI_HOME"]) / f"{name}.stderr"
    with open(stderr_path, "w") as stderr:
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=REPO)
        timeline, stopped = [], False
        while True:  # wait4, not poll(): it also gives the child's own peak RSS
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.monotonic() - started
            current = rss_mb(child.pid)
            if current is not None:
                timeline.append([round(elapsed, 1), round(current, 1), progress(stderr_path)])
            if elapsed > time_limit and not stopped:
                child.send_signal(signal.SIGKILL)
                stopped = True
            time.sleep(SAMPLE_S)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    result = {
        "case": name,
        "command": " ".join(argv[:1] + ["..."] + argv[-6:]) if len(argv) > 8 else " ".join(argv),
        "seconds": round(time.monotonic() - started, 1),
        "completed": not stopped and os.waitstatus_to_exitcode(status) == 0,
        "exit_code": None if stopped else os.waitstatus_to_exitcode(status),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "progress_reached": timeline[-1][2] if timeline else None,
        "timeline": timeline[:: max(1, len(timeline) // 200)],  # seconds, RSS MB, progress
    }
    if not result["completed"] and not stopped:
        result["stderr_tail"] = stderr_path.read_text()[-1500:]
    print(f"{name}: peak {result['peak_rss_mb']:.0f} MB in {result['seconds']:.0f} s"
          f"{'' if result['completed'] else ' (stopped/failed at ' + str(result['progress_reached']) + ')'}",
          flush=True)
    return result


def audio_progress(output: Path):
    """Seconds of audio written so far (the partial output file, 16-bit mono)."""
    partial = output.with_name(f".{output.name}.partial")

    def progress(_stderr: Path) -> float:
        for path in (partial, output):
            if path.exists():
                return round(max(0, path.stat().st_size - 44) / 2 / RATE, 1)
        return 0.0

    return progress


def ingest_progress(stderr: Path) -> str:
    """The last progress line `michi docs add` printed (a fraction of the file)."""
    found = re.findall(r"(reading|chunking|embedding(?: \d+%)?|saving)", stderr.read_text(errors="replace"))
    return found[-1] if found else "starting"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="ingest,codec,chat")
    parser.add_argument("--text-mb", default="1,30,90")
    parser.add_argument("--audio-s", default="60,3600", help="codec input lengths")
    parser.add_argument("--chat-audio-s", default="60,3600", help="chat input lengths")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="per run, seconds")
    parser.add_argument("--real-embedder-s", type=float, default=300.0,
                        help="how long the real-MiniLM ingest of the largest text may run (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the children")
    parser.add_argument("--codec-checkpoint", default="tiny",
                        help="a codec or model checkpoint folder, or 'tiny' (the tiny preset's codec, saved "
                             "here: the streaming path's memory does not depend on the weights)")
    parser.add_argument("--json", help="default: benchmarks/results/memory_<timestamp>.json")
    args = parser.parse_args()
    cases = args.cases.split(",")
    results = []
    out = Path(args.json) if args.json else RESULTS / f"memory_{dt.datetime.now():%Y%m%d-%H%M%S}.json"

    def save() -> None:  # after every case: a long run stopped half way keeps what it measured
        report = {
            "benchmark": "memory",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {**machine_info(torch.device("cpu")), "child_torch_threads": args.threads},
            "load_average_now": [round(x, 2) for x in os.getloadavg()],
            "results": results,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="michi-memory-bench-") as scratch:
        scratch = Path(scratch)
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

        def env_for(name: str) -> dict:
            home = scratch / name
            home.mkdir()
            return {**os.environ, "MICHI_HOME": str(home), "PYTHONPATH": python_path,
                    "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

        if "ingest" in cases:
            sizes = [float(mb) for mb in args.text_mb.split(",")]
            for mb in sizes:
                text = write_text(scratch / f"text_{mb:g}mb.txt", mb)
                result = run_case(f"ingest_{mb:g}MB_stand_in_embedder",
                                  [sys.executable, "-c", STAND_IN_ADD, str(text)], env_for(f"ingest{mb:g}"),
                                  args.time_limit, ingest_progress)
                results.append({**result, "input_mb": mb, "embedder": "stand-in (real tokenizer)"})
                save()
            if args.real_embedder_s > 0:
                mb = max(sizes)
                text = scratch / f"text_{mb:g}mb.txt"
                result = run_case(f"ingest_{mb:g}MB_minilm", [sys.executable, "-m", "michi_core.cli", "docs",
                                                             "add", str(text)],
                                  env_for(f"ingest{mb:g}real"), args.real_embedder_s, ingest_progress)
                results.append({**result, "input_mb": mb, "embedder": "all-MiniLM-L6-v2"})
                save()
        for kind, lengths in (("codec", args.audio_s), ("chat", args.chat_audio_s)):
            if kind not in cases:
                continue
            for seconds in [float(s) for s in lengths.split(",")]:
                audio = scratch / f"speech_{seconds:g}s.wav"
                if not audio.exists():
                    write_speech_like(audio, seconds)
                output = scratch / f"{kind}_{seconds:g}s_out.wav"
                argv = [sys.executable, "-m", "michi_core.cli", kind, "--input", str(audio), "--output", str(output)]
                if kind == "chat":
                    argv += ["--preset", "tiny", "--seed", "0",
                             "--transcript", str(scratch / f"chat_{seconds:g}s.json")]
                else:
                    argv += ["--checkpoint", str(codec_checkpoint(args.codec_checkpoint, scratch))]
                result = run_case(f"{kind}_{seconds:g}s", argv, env_for(f"{kind}{seconds:g}"), args.time_limit,
                                  audio_progress(output))
                results.append({**result, "input_seconds": seconds,
                                **({"preset": "tiny"} if kind == "chat" else {"codec": args.codec_checkpoint})})
                save()
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
