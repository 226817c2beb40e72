"""Fixtures for the audio tests: test signals, real speech, and a virtual PulseAudio device.

- `speech_like`: a deterministic speech-shaped signal (pitch pulses through moving formants,
  syllable-rate envelope, pauses) that needs nothing installed;
- `espeak_speech`: real synthesized speech from the espeak-ng library inside the
  `espeakng-loader` wheel (a `train` extra), through its C API;
- `pulse_audio`: a user-space PulseAudio with a null sink whose monitor is the input, so what
  a duplex stream plays comes back on its input. It skips only when the `pulseaudio` binary
  is missing (`make system-deps` installs it).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from app.audio.virtual_pulse import VirtualPulseAudio, pulseaudio_installed
from michi_core.audio import int16_to_float, resample
from michi_core.model.config import CodecConfig

log = logging.getLogger(__name__)

RATE = CodecConfig.sample_rate


def make_speech_like(seconds: float, seed: int, f0: float = 120.0, sample_rate: int = RATE) -> np.ndarray:
    """Speech-shaped float32 audio: voiced syllables (~4 Hz) with pauses, peak 0.5.

    A glottal pulse train with drifting pitch is filtered by three formant resonators that
    change every 120 ms (vowel-like), then shaped by a syllable envelope and gated into
    phrases, so it has speech's spectrum, pitch and rhythm without any recording.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi)))
    pulses = np.diff(np.floor(np.cumsum(pitch / sample_rate)), prepend=0.0)
    source = pulses + 0.02 * rng.standard_normal(n)
    vowels = [(700, 1200, 2600), (300, 2300, 3000), (500, 900, 2400), (400, 1900, 2550)]
    out = np.zeros(n)
    segment = int(0.12 * sample_rate)
    for start in range(0, n, segment):
        chunk = source[start : start + segment]
        for formant in vowels[rng.integers(len(vowels))]:
            b, a = signal.iirpeak(formant, Q=8, fs=sample_rate)
            out[start : start + segment] += signal.lfilter(b, a, chunk)
    syllables = np.clip(1.3 * np.sin(np.pi * 4.0 * t / 2 + rng.uniform(0, 2 * np.pi)) ** 2, 0, 1)
    phrases = (rng.uniform(size=int(2 * seconds) + 1) > 0.2).repeat(sample_rate // 2)[:n]
    out *= syllables * phrases
    return (0.5 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


@pytest.fixture(scope="session")
def speech_like() -> Callable[..., np.ndarray]:
    return make_speech_like


class _Espeak:
    """espeak-ng's C API (synchronous mode) through ctypes; ~1000x real time."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = str(Path(espeakng_loader.get_data_path()).parent)  # the dir holding espeak-ng-data
        self.rate = self.lib.espeak_Initialize(2, 0, data_parent.encode(), 0)  # 2: AUDIO_OUTPUT_SYNCHRONOUS
        assert self.rate > 0, "espeak-ng failed to initialise"
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )

        def collect(wav, count, events):
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            return 0

        self._callback = callback_type(collect)  # kept alive: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def __call__(self, text: str, voice: str = "en-us", sample_rate: int = RATE) -> np.ndarray:
        assert self.lib.espeak_SetVoiceByName(voice.encode()) == 0, f"espeak-ng has no voice {voice!r}"
        self._chunks = []
        encoded = text.encode()
        # position 0, POS_CHARACTER, no end, espeakCHARS_UTF8
        assert self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, 1, 0, 1, None, None) == 0
        self.lib.espeak_Synchronize()
        audio = int16_to_float(np.concatenate(self._chunks))
        return resample(audio, self.rate, sample_rate)


@pytest.fixture(scope="session")
def espeak_speech() -> Callable[..., np.ndarray]:
    """text -> real (robotic) speech at 24 kHz."""
    pytest.importorskip("espeakng_loader", reason="espeakng-loader (the `train` extra) makes the real speech")
    return _Espeak()


# -- virtual PulseAudio ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pulse_audio(tmp_path_factory) -> Iterator[str]:
    """A private PulseAudio daemon with a 24 kHz null sink (looped back) for the session.

    Yields the PortAudio device name to open ('pulse'). The daemon and its keep-alive stream are
    stopped by pid at teardown, and the environment is restored (app/audio/virtual_pulse.py).
    """
    if not pulseaudio_installed():
        pytest.skip("the pulseaudio binary is missing: `make system-deps` (or apt-get install pulseaudio "
                    "pulseaudio-utils libasound2-plugins libportaudio2) installs it")
    with VirtualPulseAudio(RATE, runtime_dir=tmp_path_factory.mktemp("pulse-runtime")) as device:
        yield device
