"""A `Recorder` (app.widgets.enrollment_dialog) for the enrollment dialog's and the Voices panel's
tests: a crafted microphone signal in, what is played kept."""

from __future__ import annotations

import numpy as np

from michi_core.stores.voices import STORE_RATE

RATE = STORE_RATE


class FakeRecorder:
    """A microphone that captures `signal` (default: nothing) half a second per read (nothing in
    the read right after start: the device has only just opened), and a speaker that keeps what
    it is asked to play and is done after a few polls."""

    def __init__(self, signal: np.ndarray | None = None, chunk_s: float = 0.5):
        self.signal = np.zeros(0, np.float32) if signal is None else signal.astype(np.float32)
        self.chunk = int(chunk_s * RATE)
        self.position = 0
        self.running = False
        self.fresh = False
        self.played: list[np.ndarray] = []
        self._playing_polls = 0

    def start(self) -> None:
        assert not self.running, "started twice"
        self.running, self.fresh = True, True

    def stop(self) -> None:
        self.running = False

    def read(self) -> np.ndarray:
        assert self.running, "read from a closed device"
        if self.fresh:
            self.fresh = False
            return np.zeros(0, np.float32)
        block = self.signal[self.position: self.position + self.chunk]
        self.position += len(block)
        return block

    @property
    def exhausted(self) -> bool:
        return self.position >= len(self.signal)

    def play(self, wave: np.ndarray) -> None:
        assert self.running, "play on a closed device"
        self.played.append(np.array(wave))
        self._playing_polls = 3

    def keep_playing(self) -> bool:
        self._playing_polls -= 1
        return self._playing_polls > 0
