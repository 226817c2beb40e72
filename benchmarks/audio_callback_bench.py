"""Audio callback benchmark: does the PortAudio callback stay trivial while the model computes?

    .venv/bin/python benchmarks/audio_callback_bench.py [--seconds 60] [--fake] [--step-fn mod:fn]

Runs `AudioIO` on the virtual PulseAudio device (real PortAudio; `--fake` uses the in-process
virtual device instead) for --seconds, while a worker thread does what the inference worker
does each 80 ms frame: read the mic frame, cancel the echo (`--aec`), step a compute load, and
queue the output frame for playback. The load is `--step-fn` (a `module:function` taking the
1920-sample mic frame and returning a 1920-sample frame), by default numpy matmuls sized to
take ~20 ms. The output queue starts one frame deep (a jitter buffer), so an underrun means
the worker really fell behind, not that it was merely in phase with the device.

Reports the callback's worst and p99 duration against its block period, underruns, PortAudio
status flags (xruns), the longest gap between callbacks and the step times, and writes
benchmarks/results/audio_callback_<timestamp>.json with the machine info.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from a checkout, installed or not

from app.audio.file_device import VirtualSoundDevice  # noqa: E402
from app.audio.stream import AudioIO  # noqa: E402
from app.audio.virtual_pulse import VirtualPulseAudio  # noqa: E402
from michi_core.model.config import CodecConfig  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
RATE = CodecConfig.sample_rate
FRAME = CodecConfig.frame_size
log = logging.getLogger("audio_callback_bench")


def matmul_load(target_ms: float = 20.0) -> Callable[[np.ndarray], np.ndarray]:
    """A step function that burns ~target_ms of BLAS time (threads and GIL release like torch)."""
    rng = np.random.default_rng(0)

    def timed(size: int) -> float:
        a = rng.standard_normal((size, size), dtype=np.float32)
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            a @ a
            runs.append((time.perf_counter() - started) * 1000)
        return float(np.min(runs))  # the unloaded cost: other processes on the machine only add to it

    probe = 768
    flops_per_ms = 2 * probe**3 / timed(probe)  # a product of n x n matrices costs 2 n**3 flops
    size = int(np.clip((target_ms * flops_per_ms / 2) ** (1 / 3), 32, 4096))
    took = timed(size)
    a = rng.standard_normal((size, size), dtype=np.float32)
    log.info("matmul load: %dx%d, %.1f ms per step", size, size, took)

    def step(frame: np.ndarray) -> np.ndarray:
        a @ a
        return np.zeros(FRAME, dtype=np.float32) + 0.01 * frame[:FRAME]

    return step


def load_step_fn(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    module, _, name = spec.partition(":")
    assert name, "--step-fn is module:function"
    return getattr(importlib.import_module(module), name)


def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    import sounddevice

    info["portaudio"] = sounddevice.get_portaudio_version()[1]
    return info


def run(args: argparse.Namespace) -> dict:
    step_fn = load_step_fn(args.step_fn) if args.step_fn else matmul_load(args.load_ms)
    echo = None
    if args.aec:
        from app.audio.echo import EchoCanceller

        echo = EchoCanceller()
    with contextlib.ExitStack() as stack:
        if args.fake:
            sd, device = VirtualSoundDevice(), None
        else:
            import sounddevice as sd

            device = stack.enter_context(VirtualPulseAudio(RATE))
        audio = AudioIO(sd=sd, input_device=device, output_device=device, block_ms=args.block_ms,
                        realtime=not args.no_realtime)
        step_ms: list[float] = []
        stop = threading.Event()

        def worker() -> None:
            audio.write_playback(np.zeros(FRAME, dtype=np.float32))  # one frame of jitter buffer
            while not stop.is_set():
                frame = audio.read_mic_frame(FRAME)
                if frame is None:
                    time.sleep(0.002)
                    continue
                started = time.perf_counter()
                if echo is not None:
                    frame = echo.process(frame, audio.played_reference(FRAME))
                out = step_fn(frame)
                step_ms.append(1000 * (time.perf_counter() - started))
                audio.write_playback(np.asarray(out, dtype=np.float32))

        audio.start()
        thread = threading.Thread(target=worker, name="bench-worker", daemon=True)
        started = time.monotonic()
        thread.start()
        try:
            while time.monotonic() - started < args.seconds:
                time.sleep(0.5)
        finally:
            stop.set()
            thread.join(timeout=10)
            audio.stop()
        wall = time.monotonic() - started
        stats = audio.stats()
    block_ms = 1000 * audio._blocksize / audio.device_rate
    return {
        "benchmark": "audio_callback",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "backend": "fake (VirtualSoundDevice)" if args.fake else "PortAudio -> virtual PulseAudio null sink",
        "device": audio.device_name,
        "device_rate": audio.device_rate,
        "block_ms": block_ms,
        "stream_latency_ms": 1000 * audio.stream_latency_s,
        "seconds": round(wall, 2),
        "step_fn": args.step_fn or f"numpy matmul ~{args.load_ms:.0f} ms",
        "aec_in_worker": args.aec,
        "callbacks": stats.callbacks,
        "callback_worst_ms": stats.worst_callback_ms,
        "callback_p99_ms": stats.p99_callback_ms,
        "callback_p50_ms": stats.p50_callback_ms,
        "callback_worst_fraction_of_block": stats.worst_callback_ms / block_ms,
        "slow_callbacks_over_quarter_block": stats.slow_callbacks,
        "max_callback_gap_ms": stats.max_callback_gap_ms,
        "callback_realtime_priority": stats.realtime,
        "underruns": stats.underruns,
        "xruns": stats.xruns,
        "input_overflows": stats.input_overflows,
        "input_underflows": stats.input_underflows,
        "output_underflows": stats.output_underflows,
        "output_overflows": stats.output_overflows,
        "mic_dropped_samples": stats.mic_dropped_samples,
        "frames_stepped": len(step_ms),
        "step_p50_ms": float(np.percentile(step_ms, 50)) if step_ms else None,
        "step_p99_ms": float(np.percentile(step_ms, 99)) if step_ms else None,
        "step_max_ms": float(np.max(step_ms)) if step_ms else None,
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fake", action="store_true", help="in-process virtual device instead of PulseAudio")
    parser.add_argument("--step-fn", help="module:function, frame -> frame; default: numpy matmul load")
    parser.add_argument("--load-ms", type=float, default=20.0, help="duration of the default matmul step")
    parser.add_argument("--block-ms", type=float, default=20.0, help="device block period")
    parser.add_argument("--aec", action="store_true", help="run the echo canceller in the worker too")
    parser.add_argument("--no-realtime", action="store_true",
                        help="keep the callback thread at normal priority")
    parser.add_argument("--out", type=Path,
                        help="JSON path (default benchmarks/results/audio_callback_<ts>.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run(args)
    out = args.out or RESULTS / f"audio_callback_{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
