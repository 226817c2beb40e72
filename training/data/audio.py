"""Audio at the edges of the data pipeline: read any file as 24 kHz mono float32, write atomically.

Everything inside Michi runs at `CodecConfig.sample_rate`; synthesizers (16-22.05 kHz) and corpora
are resampled here, once, on the way in.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """(n,) float32 at from_rate -> (m,) float32 at to_rate (soxr, high quality)."""
    audio = np.asarray(audio, dtype=np.float32)
    if from_rate == to_rate:
        return audio
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32)


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Any soundfile-readable file -> (n,) float32 mono at sample_rate (channels averaged)."""
    audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(audio.mean(axis=1), file_rate, sample_rate)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (n,) float32 audio as FLAC (16-bit) or WAV (float) atomically.

    The file appears under its final name only once it is complete (write to a hidden temporary
    name in the same folder, then rename), so a killed build never leaves a truncated file that
    a resumed build would trust.
    """
    path = Path(path)
    assert audio.ndim == 1, f"write mono audio, got shape {audio.shape}"
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = {".flac": ("FLAC", "PCM_16"), ".wav": ("WAV", "FLOAT")}.get(path.suffix.lower())
    assert kind is not None, f"write .flac or .wav, not {path.suffix!r}"
    partial = path.with_name(f".{path.name}.partial")
    sf.write(str(partial), np.clip(audio, -1.0, 1.0), sample_rate, format=kind[0], subtype=kind[1])
    os.replace(partial, path)


def trim_silence(audio: np.ndarray, sample_rate: int, keep_s: float = 0.1,
                 threshold_db: float = -45.0) -> tuple[np.ndarray, int]:
    """Cut leading/trailing silence down to keep_s; returns (trimmed audio, samples cut at the start).

    Silence is any 10 ms window whose RMS is threshold_db below the clip's peak window.
    """
    window = max(1, sample_rate // 100)
    num_windows = len(audio) // window
    if num_windows == 0:
        return audio, 0
    rms = np.sqrt(np.mean(audio[: num_windows * window].reshape(num_windows, window) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > threshold_db)
    keep = int(keep_s * sample_rate)
    start = max(0, loud[0] * window - keep)
    end = min(len(audio), (loud[-1] + 1) * window + keep)
    return audio[start:end], start
