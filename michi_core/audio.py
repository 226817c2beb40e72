"""Audio files at the edges: read any rate/channel count into 24 kHz mono float32, write WAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioFileError(ValueError):
    """An audio file that cannot be used, with a message a user can act on."""


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(t,) or (t, channels) -> (t,) by averaging channels."""
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    if rate == target_rate:
        return wave.astype(np.float32, copy=False)
    return soxr.resample(wave.astype(np.float32, copy=False), rate, target_rate, quality="HQ").astype(np.float32)


def load_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Read a file (wav/flac/ogg/...) as mono float32 at `sample_rate`."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
        if max_seconds is not None and info.duration > max_seconds:
            raise AudioFileError(f"{path}: {info.duration:.0f} s is longer than the {max_seconds:.0f} s allowed")
        wave, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except sf.LibsndfileError as error:
        raise AudioFileError(f"{path}: not a readable audio file ({error})") from error
    wave = to_mono(np.asarray(wave, dtype=np.float32))
    if wave.size == 0:
        raise AudioFileError(f"{path}: the file holds no audio")
    if not np.isfinite(wave).all():
        raise AudioFileError(f"{path}: the audio holds NaN or infinite samples")
    return resample(wave, int(rate), sample_rate)


def save_audio(path: str | Path, wave: np.ndarray, sample_rate: int) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wave, -1.0, 1.0).astype(np.float32), sample_rate, subtype="PCM_16")


def pad_to_frames(wave: np.ndarray, frame_size: int) -> np.ndarray:
    """Zero-pad the end so the length is a whole number of frames."""
    remainder = (-len(wave)) % frame_size
    return np.pad(wave, (0, remainder)) if remainder else wave
