"""Voice activity on the (echo-cancelled) mic: is the user speaking, and when did they stop?

The live call's definition of speech (`michi_core.vad` holds the one webrtcvad wrapper and says
how each caller's definition differs): causal, on `sub_frame_ms` slices of 16 kHz audio, gated
against a tracked noise floor. Each 80 ms model frame is resampled to 16 kHz (a streaming soxr
resampler: no clicks at frame edges), cut into slices, and webrtcvad's flickering decisions are
smoothed:

- speech **starts** once `start_ms` of the last `start_window_ms` were voiced (a cough or a
  click is shorter), and the start is dated to the first voiced slice of that window;
- speech **ends** after `hangover_ms` without a voiced slice, and the end is dated to the end
  of the last voiced slice, not to the moment the hangover ran out. That end is what the
  response latency is measured from (end of user speech -> first model audio played).

webrtcvad alone calls steady noise speech, so a slice counts as voiced only if webrtcvad says
so *and* its pre-emphasised level stands `margin_db` above a tracked noise floor (follows the
level down at once, up by `floor_rise_db_per_s`: speech has dips between syllables, steady noise
has none), *and* it is louder than `floor_dbfs`, so the near-silence left after echo
cancellation never fires.

Positions are in model-rate samples since the detector started, the same unit as
`AudioIO.captured_samples`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np
import soxr

from app.audio_port import SpeechEvents
from michi_core.model.config import CodecConfig
from michi_core.vad import VAD_RATE, SliceVad, gate, slice_levels_db

PRE_EMPHASIS = 0.95  # y[n] = x[n] - 0.95 x[n-1]: the classic speech high-shelf


class VoiceActivity:
    """Frame-by-frame speech detector with start/end events; satisfies `VoiceActivityDetector`."""

    def __init__(
        self,
        *,
        sample_rate: int = CodecConfig.sample_rate,
        aggressiveness: int = 2,  # webrtcvad 0..3: higher rejects more noise, and more quiet speech
        sub_frame_ms: int = 20,  # 10, 20 or 30: webrtcvad's frame sizes
        start_window_ms: int = 100,
        start_ms: int = 60,  # voiced time within the window that starts speech
        hangover_ms: int = 300,  # silence that ends it: shorter cuts users off mid-sentence
        floor_dbfs: float = -55.0,  # absolute: quieter slices are never speech
        margin_db: float = 6.0,  # above the tracked noise floor
        floor_rise_db_per_s: float = 6.0,  # how fast the floor follows a noise that got louder
        on_speech_start: Callable[[int], None] | None = None,  # called with the start position
        on_speech_end: Callable[[int], None] | None = None,  # called with the end position
    ) -> None:
        assert start_ms <= start_window_ms, "start_ms of voice must fit in the start window"
        self.sample_rate = sample_rate
        self.aggressiveness = aggressiveness
        self.sub_frame_ms = sub_frame_ms
        self.slice = SliceVad(aggressiveness, sub_frame_ms).slice  # samples per sub-frame at 16 kHz
        self.start_window = max(1, round(start_window_ms / sub_frame_ms))  # in sub-frames
        self.start_count = max(1, round(start_ms / sub_frame_ms))
        self.hangover = max(1, round(hangover_ms / sub_frame_ms))
        self.floor_dbfs = floor_dbfs
        self.margin_db = margin_db
        self.floor_rise_db = floor_rise_db_per_s * sub_frame_ms / 1000  # per slice
        self.on_speech_start = on_speech_start
        self.on_speech_end = on_speech_end
        self.reset()

    def reset(self) -> None:
        """Start over: not speaking, positions from zero."""
        self._vad = SliceVad(self.aggressiveness, self.sub_frame_ms)
        self._resampler = (
            soxr.ResampleStream(self.sample_rate, VAD_RATE, 1, dtype="float32", quality="LQ")
            if self.sample_rate != VAD_RATE else None
        )
        self._pending = np.zeros(0, dtype=np.float32)  # 16 kHz samples not yet in a whole slice
        self._noise_db = math.inf  # tracked noise floor; the first slice sets it
        self._slices_done = 0  # slices classified so far
        self._window: deque[tuple[int, bool]] = deque(maxlen=self.start_window)  # (slice index, voiced)
        self._silent_run = 0
        self._last_voiced = -1
        self.speaking = False
        self.speech_started_at: int | None = None  # model-rate sample position
        self.speech_ended_at: int | None = None
        self._events = SpeechEvents()

    def _position(self, slice_index: int) -> int:
        """Model-rate sample position of the start of a slice."""
        return slice_index * self.slice * self.sample_rate // VAD_RATE

    def _is_voiced(self, samples: np.ndarray) -> bool:
        # Pre-emphasised: rumble and hum, where steady noise lives, do not count.
        level_db = float(slice_levels_db(samples, self.slice, PRE_EMPHASIS)[0])
        if math.isinf(self._noise_db):
            self._noise_db = level_db
        elif level_db < self._noise_db:  # down quickly, but not into every trough of the noise
            self._noise_db += 0.3 * (level_db - self._noise_db)
        else:
            self._noise_db = min(level_db, self._noise_db + self.floor_rise_db)
        # webrtcvad sees every slice, not only loud ones: it adapts its own noise model on them.
        voiced = self._vad.is_speech(samples)
        return bool(gate(voiced, level_db, self._noise_db, self.margin_db, self.floor_dbfs))

    def update(self, frame: np.ndarray) -> bool:
        """Feed one frame of mic audio (model rate); True while the user is speaking."""
        frame = np.asarray(frame, dtype=np.float32)
        resampled = self._resampler.resample_chunk(frame) if self._resampler is not None else frame
        samples = np.concatenate([self._pending, resampled])
        whole = len(samples) // self.slice * self.slice
        for start in range(0, whole, self.slice):
            self._step(self._is_voiced(samples[start : start + self.slice]))
        self._pending = samples[whole:]
        return self.speaking

    def _step(self, voiced: bool) -> None:
        index = self._slices_done
        self._slices_done += 1
        self._window.append((index, voiced))
        if voiced:
            self._last_voiced = index
            self._silent_run = 0
        else:
            self._silent_run += 1
        if not self.speaking:
            if sum(v for _, v in self._window) >= self.start_count:
                self.speaking = True
                first = next(i for i, v in self._window if v)
                self.speech_started_at = self._position(first)
                self._events.started = True
                if self.on_speech_start is not None:
                    self.on_speech_start(self.speech_started_at)
        elif self._silent_run >= self.hangover:
            self.speaking = False
            self._window.clear()
            self.speech_ended_at = self._position(self._last_voiced + 1)
            self._events.ended = True
            if self.on_speech_end is not None:
                self.on_speech_end(self.speech_ended_at)

    def process(self, frame: np.ndarray) -> SpeechEvents:
        """`update` for the conversation loop: what started or ended during this frame."""
        self._events = SpeechEvents()
        self.update(frame)
        return self._events
