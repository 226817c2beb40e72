"""What the conversation loop needs from the audio layer (app/audio), and nothing more.

The loop is written against these small protocols rather than the concrete classes, so a
test can hand it the real `AudioIO` on a fake sounddevice backend, and the audio layer can
change its internals without touching the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class SpeechEvents:
    """What the VAD noticed in one frame."""

    started: bool = False  # the user began speaking
    ended: bool = False  # the user stopped (after the VAD's hangover)


class VoiceActivityDetector(Protocol):
    # Where the last speech ended, in samples fed to the detector since it started (the VAD says
    # so after a hangover; this dates the end back to the last voiced audio).
    speech_ended_at: int | None

    def process(self, frame: np.ndarray) -> SpeechEvents: ...


class EchoCanceller(Protocol):
    def process(self, mic_frame: np.ndarray, played_reference: np.ndarray) -> np.ndarray: ...


class AudioStats(Protocol):
    underruns: int  # output callbacks that found too little model audio
    xruns: int  # input overflows and other PortAudio status flags


class AudioPort(Protocol):
    device_name: str  # for the status line and the overlay
    on_error: Callable[[str], None] | None  # called (from the audio thread) when the device fails

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def read_mic_frame(self, n: int) -> np.ndarray | None: ...  # n samples at 24 kHz, or None if fewer wait
    def write_playback(self, samples: np.ndarray) -> None: ...
    def clear_playback(self) -> None: ...  # drop queued model audio (the user interrupted)
    # What the speaker played while the last mic frame was captured (the echo canceller's far end).
    def played_reference(self, n: int) -> np.ndarray: ...
    def stats(self) -> AudioStats: ...

    @property
    def played_samples(self) -> int: ...  # model audio samples actually sent to the speaker
    @property
    def captured_samples(self) -> int: ...  # mic samples captured since start
    @property
    def mic_backlog_samples(self) -> int: ...  # captured but not read yet
    @property
    def playback_queued_samples(self) -> int: ...  # written but not played yet
    @property
    def mic_level(self) -> float: ...  # RMS of the latest mic block
    @property
    def output_level(self) -> float: ...  # RMS of the latest output block
