"""Is this slice of audio speech? The one webrtcvad wrapper, for the live call, the enrollment
check and the data pipeline.

webrtcvad (the GMM detector from WebRTC) is tiny, fast (~30 us a slice) and robust to level, but
it takes only 8/16/32/48 kHz and 10/20/30 ms slices, so everything here works on slices of
16 kHz audio (16 kHz keeps every formant that matters for voice activity and is the cheapest
wide band). Alone it calls steady noise speech: the first ~100 ms of any noise, and for good a
fan at -20 dBFS or mains hum (measured). So a caller that faces real microphones *gates* its
decision: a slice is speech when webrtcvad says so, it stands `margin_db` above the noise floor,
and it is louder than an absolute minimum (`gate`).

What "speech" must mean differs by caller, and only in these parameters:
- the live call (`app/audio/vad.py`): 20 ms slices, causal; the noise floor is tracked slice by
  slice (the future is unknown), the level is pre-emphasised so rumble and hum do not count,
  and start/end smoothing on top says when the user starts and stops talking;
- the enrollment check (`stores/voice_checks.py`): the whole take is known, so the floor is a
  low percentile of its 30 ms slice levels (the pauses are the room); plain levels, so its SNR
  is the one a user would measure;
- the data pipeline (`training/data/vad.py`): clean synthesized or studio speech, where only the
  pauses matter: webrtcvad alone on 20 ms slices, an 80 ms frame being speech if any slice is;
  the duplex evaluation (`training/eval/duplex.py`) adds an absolute floor on top (a frame under
  -50 dBFS is silence to a listener, whatever webrtcvad says of a model's faint hiss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from michi_core.audio import float_to_int16, resample

VAD_RATE = 16_000  # Hz: the rate every slice is judged at
SILENCE_DB = -120.0  # the level of digital silence (a power of 1e-12)


class SliceVad:
    """webrtcvad's own decision on slices of 16 kHz float audio.

    Stateful: webrtcvad adapts its noise model on every slice it sees, so feed it all of them,
    in order, not only the loud ones.
    """

    def __init__(self, aggressiveness: int = 2, slice_ms: int = 20):
        assert slice_ms in (10, 20, 30), "webrtcvad takes 10, 20 or 30 ms slices"
        assert 0 <= aggressiveness <= 3, "webrtcvad aggressiveness is 0 (lenient) .. 3 (strict)"
        self.slice = VAD_RATE * slice_ms // 1000  # samples per slice
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, samples: np.ndarray) -> bool:
        """One slice (`self.slice` samples at 16 kHz, float in [-1, 1])."""
        return self._vad.is_speech(float_to_int16(samples).tobytes(), VAD_RATE)

    def decisions(self, audio: np.ndarray) -> np.ndarray:
        """(n,) float at 16 kHz -> (n // slice,) bool, one decision per whole slice."""
        pcm = float_to_int16(audio[: len(audio) // self.slice * self.slice])
        return np.array([self._vad.is_speech(pcm[i: i + self.slice].tobytes(), VAD_RATE)
                         for i in range(0, len(pcm), self.slice)], dtype=bool)


def slice_levels_db(audio: np.ndarray, slice_size: int, pre_emphasis: float = 0.0) -> np.ndarray:
    """(n,) float -> (n // slice_size,) mean power of each whole slice, dBFS.

    `pre_emphasis` p takes the level of y[k] = x[k] - p x[k-1] within each slice (0.95: the
    classic speech high-shelf; rumble and hum below ~300 Hz, where steady noise lives and speech
    has little energy, then hardly count).
    """
    count = len(audio) // slice_size
    slices = np.asarray(audio[: count * slice_size], dtype=np.float64).reshape(count, slice_size)
    if pre_emphasis:
        slices = slices[:, 1:] - pre_emphasis * slices[:, :-1]
    return 10.0 * np.log10(np.mean(slices ** 2, axis=1) + 1e-12)


def gate(voiced, level_db, floor_db, margin_db: float, min_dbfs: float = -np.inf):
    """webrtcvad's `voiced`, kept only where the level stands `margin_db` above the noise floor
    and above `min_dbfs`. Works on scalars and on arrays of slices alike."""
    return voiced & (level_db >= floor_db + margin_db) & (level_db >= min_dbfs)


@dataclass
class SpeechSlices:
    speech: np.ndarray  # (n,) bool: the slice is speech
    level_db: np.ndarray  # (n,) its mean power, dBFS
    noise_floor_db: float  # what the gate measured against (SILENCE_DB without slices)
    slice_s: float  # seconds per slice


def speech_slices(wave: np.ndarray, sample_rate: int, *, slice_ms: int = 20, aggressiveness: int = 2,
                  margin_db: float | None = None, floor_percentile: float = 10.0,
                  quietest_floor_dbfs: float = -70.0) -> SpeechSlices:
    """A whole clip (mono, any rate), slice by slice.

    With `margin_db` None, speech is webrtcvad's decision alone. Otherwise it is gated against
    the clip's noise floor: the `floor_percentile`-th percentile of its slice levels (the
    quietest moments of a recording are the room), raised to `quietest_floor_dbfs` where the
    floor is digital silence (no microphone chain is that quiet).
    """
    audio = resample(wave, sample_rate, VAD_RATE)
    vad = SliceVad(aggressiveness, slice_ms)
    level_db = slice_levels_db(audio, vad.slice)
    voiced = vad.decisions(audio)
    floor_db = float(np.percentile(level_db, floor_percentile)) if len(level_db) else SILENCE_DB
    if margin_db is not None:
        voiced = gate(voiced, level_db, max(floor_db, quietest_floor_dbfs), margin_db)
    return SpeechSlices(voiced, level_db, floor_db, slice_ms / 1000)
