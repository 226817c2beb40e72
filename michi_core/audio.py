"""Audio at the edges, for the app, the stores and the data pipeline alike: read any file as mono
float32 at the rate asked, write one atomically, resample, and convert float <-> 16-bit PCM.

Everything inside Michi runs at `CodecConfig.sample_rate` (24 kHz); files, synthesizers and
devices at other rates are resampled here, once, on the way in. There is one 16-bit scale:
full scale is 32768, as in soundfile, webrtcvad and the WebRTC echo canceller, so
int16 -> float -> int16 gives back every sample exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

INT16_SCALE = 32768.0  # -32768..32767 <-> [-1, 1)


class AudioFileError(ValueError):
    """An audio file that cannot be used, with a message a user can act on."""


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(t,) or (t, channels) -> (t,) by averaging channels."""
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """(n,) float32 at `rate` -> (m,) float32 at `target_rate` (soxr, high quality, whole clip).

    For audio that arrives block by block use `soxr.ResampleStream`: it keeps the filter state
    across blocks, so block edges do not click.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if rate == target_rate:
        return wave
    return soxr.resample(wave, rate, target_rate, quality="HQ").astype(np.float32)


def float_to_int16(wave: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[-1, 1] float -> int16, rounded, with anything beyond full scale clipped (+1.0 -> 32767).

    `out` (int16, same length) is filled in place and returned: the real-time paths convert
    every frame and must not allocate.
    """
    scaled = np.multiply(wave, INT16_SCALE, dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -INT16_SCALE, INT16_SCALE - 1, out=scaled)
    if out is None:
        return scaled.astype(np.int16)
    out[:] = scaled
    return out


def int16_to_float(pcm: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """int16 -> float32 in [-1, 1); `out` (float32, same length) is filled in place if given."""
    return np.multiply(pcm, np.float32(1.0 / INT16_SCALE), out=out, dtype=np.float32)


def load_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Read a file (wav/flac/ogg/...) as mono float32 at `sample_rate` (channels averaged).

    Raises AudioFileError, with the file's name and what is wrong, for a missing, unreadable,
    empty or too long file, or one holding NaN or infinite samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
        if max_seconds is not None and info.duration > max_seconds:
            raise AudioFileError(f"{path}: {info.duration:.0f} s is longer than the "
                                 f"{max_seconds:.0f} s allowed")
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
    """Write (n,) or (n, channels) float audio in the format the suffix names (16-bit for .wav
    and .flac), clipped to [-1, 1].

    Atomic: the file appears under its final name only once it is complete (written to a hidden
    name in the same folder, then renamed), so a killed run never leaves a truncated file that
    a resumed one would trust.
    """
    path = Path(path)
    file_format = path.suffix[1:].upper()
    if file_format not in sf.available_formats():
        raise AudioFileError(f"{path}: cannot write {path.suffix!r} audio; use .wav, .flac or .ogg")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    sf.write(str(partial), np.clip(wave, -1.0, 1.0).astype(np.float32), sample_rate, format=file_format)
    os.replace(partial, path)


def pad_to_frames(wave: np.ndarray, frame_size: int) -> np.ndarray:
    """Zero-pad the end so the length is a whole number of frames."""
    remainder = (-len(wave)) % frame_size
    return np.pad(wave, (0, remainder)) if remainder else wave


def trim_silence(audio: np.ndarray, sample_rate: int, keep_s: float = 0.1,
                 threshold_db: float = -45.0) -> tuple[np.ndarray, int]:
    """Cut leading/trailing silence down to keep_s; returns (trimmed audio, samples cut at the start).

    Silence is any 10 ms window whose RMS is threshold_db below the clip's peak window: meant for
    clean synthesized speech (a recording's room noise is better judged by `michi_core.vad`).
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
