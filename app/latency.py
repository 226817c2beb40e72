"""Latency of the live call: the numbers Michi reports (the overlay, `michi self-test`, benchmarks).

- step time: one `DuplexSession.step`, against the frame budget (80 ms): above it, the model
  falls behind real time and the worker has to drop frames.
- TTFA: end of the user's speech (VAD, on the capture clock) -> first model audio *produced*.
- response latency: end of the user's speech -> that audio actually *played* (played-samples
  clock). It adds the playback buffer to TTFA, and is what the user feels.
- lag: seconds of mic audio captured - seconds of model audio played.

The inference thread records, the GUI thread reads snapshots: a lock guards both, briefly.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

HISTORY_FRAMES = 150  # step times kept for the plot and the percentiles: 12 s at 80 ms


@dataclass
class LatencySnapshot:
    budget_ms: float  # one frame of audio: above this per step, the model is slower than real time
    step_ms: list[float] = field(default_factory=list)  # most recent last
    step_p50_ms: float | None = None
    step_p95_ms: float | None = None
    ttfa_ms: float | None = None  # of the last turn
    response_ms: float | None = None  # of the last turn
    lag_s: float = 0.0
    buffer_ms: float = 0.0  # model audio queued for playback
    underruns: int = 0
    xruns: int = 0
    dropped_frames: int = 0  # mic frames skipped to catch up with real time
    frames: int = 0  # steps taken in this call
    device: str = ""
    backbone: str = ""  # what runs the backbone: llama.cpp or torch (runner.py)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def to_csv(self) -> str:
        """One row per recent step, with the summary values repeated: easy to load in a sheet."""
        out = io.StringIO()
        writer = csv.writer(out)
        summary = {k: v for k, v in asdict(self).items() if k != "step_ms"}
        writer.writerow(["step", "step_ms", *summary])
        first = self.frames - len(self.step_ms)
        for i, ms in enumerate(self.step_ms):
            writer.writerow([first + i, f"{ms:.3f}", *("" if v is None else v for v in summary.values())])
        return out.getvalue()


def percentile(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


@dataclass(frozen=True)
class VoicedFrame:
    """A model frame with speech in it (RMS above the silence threshold)."""

    index: int  # the loop's frame count, the same timeline as the VAD's positions / frame_size
    produced_at: float  # monotonic seconds when the step returned it
    play_at: int  # played-samples clock position where it starts


class LatencyMonitor:
    def __init__(self, budget_ms: float, sample_rate: int, backbone: str = ""):
        self.budget_ms = budget_ms
        self.backbone = backbone
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self._steps: deque[float] = deque(maxlen=HISTORY_FRAMES)
        self._all_steps: list[float] = []  # whole call, for the self-test summary
        self._frames = 0
        self._dropped = 0
        self._ttfa_ms: float | None = None
        self._response_ms: float | None = None
        self._awaiting_reply: tuple[float, int] | None = None  # (speech ended at, first frame index after it)
        self._awaiting_play: tuple[float, int] | None = None  # (speech ended at, play_at of the reply)

    def record_step(self, total_ms: float) -> None:
        with self._lock:
            self._steps.append(total_ms)
            self._all_steps.append(total_ms)
            self._frames += 1

    def record_dropped(self, frames: int) -> None:
        with self._lock:
            self._dropped += frames

    def speech_started(self) -> None:
        """The user talks (again): a reply still pending no longer answers the previous turn."""
        with self._lock:
            self._awaiting_reply = None
            self._awaiting_play = None

    def speech_ended(self, ended_at: float, after_frame: int, recent: list[VoicedFrame]) -> None:
        """The user stopped talking at `ended_at` (monotonic s, when that audio reached the mic).

        The VAD says so only after its hangover, by which time the model may already have
        answered: `recent` voiced frames from `after_frame` on count as the reply.
        """
        with self._lock:
            self._awaiting_reply = (ended_at, after_frame)
            self._awaiting_play = None
        for frame in recent:
            self.model_voiced(frame)

    def model_voiced(self, frame: VoicedFrame) -> None:
        """A frame of model speech: the first one after the end of the user's speech is the reply."""
        with self._lock:
            if self._awaiting_reply is None or frame.index < self._awaiting_reply[1]:
                return
            ended_at = self._awaiting_reply[0]
            self._ttfa_ms = 1000 * (frame.produced_at - ended_at)
            self._awaiting_reply = None
            self._awaiting_play = (ended_at, frame.play_at)

    def update_played(self, played_samples: int, now: float) -> None:
        """Resolve the response latency once the reply's first sample has been played."""
        with self._lock:
            if self._awaiting_play is None:
                return
            ended_at, play_at = self._awaiting_play
            if played_samples >= play_at:
                played_at = now - (played_samples - play_at) / self.sample_rate
                self._response_ms = 1000 * (played_at - ended_at)
                self._awaiting_play = None

    def all_step_ms(self) -> list[float]:
        with self._lock:
            return list(self._all_steps)

    def snapshot(self, *, lag_s: float, buffer_ms: float, underruns: int, xruns: int,
                 device: str) -> LatencySnapshot:
        with self._lock:
            steps = list(self._steps)
            return LatencySnapshot(
                budget_ms=self.budget_ms, step_ms=steps, step_p50_ms=percentile(steps, 50),
                step_p95_ms=percentile(steps, 95), ttfa_ms=self._ttfa_ms, response_ms=self._response_ms,
                lag_s=lag_s, buffer_ms=buffer_ms, underruns=underruns, xruns=xruns,
                dropped_frames=self._dropped, frames=self._frames, device=device, backbone=self.backbone,
            )
