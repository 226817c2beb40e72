"""Voice activity per 80 ms frame and cutting long recordings at pauses.

Speech here is webrtcvad's decision alone (`michi_core.vad`, the data pipeline's definition):
the corpora are clean synthesized or studio speech, and what matters is where the pauses are.
Each 80 ms frame is resampled to 16 kHz and split into 20 ms slices; the frame is speech if any
of them is.
"""

from __future__ import annotations

import numpy as np

from michi_core.audio import resample
from michi_core.model.config import CodecConfig
from michi_core.vad import VAD_RATE, SliceVad

SLICE_MS = 20


def speech_frames(audio: np.ndarray, codec: CodecConfig, aggressiveness: int = 2) -> np.ndarray:
    """(n,) float32 at codec.sample_rate -> (T,) bool, T = ceil(n / frame_size): speech in frame t."""
    vad = SliceVad(aggressiveness, SLICE_MS)
    frame_16k = round(codec.frame_size * VAD_RATE / codec.sample_rate)  # 1280 samples = 80 ms
    assert frame_16k % vad.slice == 0, f"a frame of {codec.frame_ms} ms must split into {SLICE_MS} ms slices"
    num_frames = -(-len(audio) // codec.frame_size)
    pcm = resample(audio, codec.sample_rate, VAD_RATE)
    pcm = np.pad(pcm, (0, num_frames * frame_16k - len(pcm)))[: num_frames * frame_16k]
    return vad.decisions(pcm).reshape(num_frames, frame_16k // vad.slice).any(axis=1)  # (T,)


def segments_at_pauses(speech: np.ndarray, max_frames: int, min_pause_frames: int = 3,
                       pad_frames: int = 1) -> list[tuple[int, int]]:
    """(T,) speech flags -> [(start, end)) frame ranges of at most max_frames each.

    Each cut goes in the middle of a pause: the longest pause in the second half of the allowed
    span (so segments are not needlessly short), else the longest anywhere, else a hard cut when
    a stretch of speech has no pause at all. Silence at the edges is trimmed to pad_frames.
    """
    num = len(speech)
    pauses: list[tuple[int, int]] = []  # [start, end) of silent runs at least min_pause_frames long
    t = 0
    while t < num:
        run_end = t
        while run_end < num and not speech[run_end]:
            run_end += 1
        if run_end - t >= min_pause_frames:
            pauses.append((t, run_end))
        t = run_end + 1
    segments: list[tuple[int, int]] = []
    cursor = 0
    while (first := _first_speech(speech, cursor)) is not None:
        limit = first + max_frames - pad_frames  # the trimmed segment may start pad_frames early
        if limit >= num:
            cut = num
        else:
            middles = [(b - a, (a + b) // 2) for a, b in pauses if first < (a + b) // 2 <= limit]
            late = [c for c in middles if c[1] >= first + max_frames // 2]
            cut = max(late or middles)[1] if middles else limit
        segments.append(_trim(speech, cursor, cut, pad_frames))
        cursor = cut
    return [(a, b) for a, b in segments if b > a]


def _first_speech(speech: np.ndarray, from_frame: int) -> int | None:
    hits = np.flatnonzero(speech[from_frame:])
    return from_frame + int(hits[0]) if len(hits) else None


def _trim(speech: np.ndarray, start: int, end: int, pad: int) -> tuple[int, int]:
    hits = np.flatnonzero(speech[start:end])
    if not len(hits):
        return start, start
    return max(start, start + int(hits[0]) - pad), min(end, start + int(hits[-1]) + 1 + pad)
