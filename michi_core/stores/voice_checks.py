"""Is a take good enough to clone a voice from? And the clean-up that makes an imported clip one.

Pure numpy + webrtcvad (no Qt, no model), so the enrollment dialog, `michi voices add` and the
training eval judge a recording the same way and tell the user the same thing.

Every measure comes from one analysis on 30 ms frames at 16 kHz (webrtcvad accepts only 8/16/32/48
kHz and 10/20/30 ms frames; 16 kHz keeps every formant that matters for voice activity):
- the *noise floor* is the 10th percentile of the frame energies: the quietest moments of a take
  (the breath before the first word, the pauses) are the room, not the voice;
- a frame is *speech* when webrtcvad says so and it stands clearly above that floor (or above
  QUIETEST_FLOOR_DBFS where the floor is digital silence), because webrtcvad alone calls a
  steady hiss speech now and then, mostly right after real speech while it adapts;
- the *speech level* is the RMS over the speech frames only, so leading silence does not make a
  well-recorded take look quiet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import webrtcvad

from michi_core.audio import resample

ANALYSIS_RATE = 16_000  # Hz: what webrtcvad listens at
ANALYSIS_FRAME_S = 0.03  # the longest frame webrtcvad takes; steadier decisions than 10 ms
VAD_MODE = 2  # 0 (lenient) .. 3 (strict): 2 tells voice from fan noise without losing soft consonants
SPEECH_MARGIN_DB = 10.0  # a voiced frame counts as speech only this far above the noise floor
SILENT_DBFS = -90.0  # below this nothing reached the microphone at all (muted or unplugged)
QUIETEST_FLOOR_DBFS = -70.0  # no real microphone chain is quieter: digital silence is gated as if this

MIN_TAKE_S = 5.0  # shorter prompts give the model too little of the voice to go on
MAX_TAKE_S = 15.0  # longer ones only cost context positions: the clone does not improve
MIN_SPEECH_S = 3.0
MIN_SPEECH_FRACTION = 0.5  # of the take: the rest is silence the prompt would waste
CLIP_LEVEL = 0.99  # |sample| at or above this is taken as clipped
MAX_CLIPPED_FRACTION = 0.001  # 0.1 % of samples: a few flattened peaks are inaudible, more is distortion
MIN_SPEECH_DBFS = -35.0  # quieter speech is mostly the microphone's own hiss once normalized
MAX_NOISE_FLOOR_DBFS = -45.0  # judged when no speech is heard: a quiet room is below -55, fans above -45
MIN_SNR_DB = 20.0  # judged when there is speech: below it the prompt teaches the room along with the voice

TARGET_SPEECH_DBFS = -20.0  # stored voices are brought to this speech level: prompts comparable
MAX_PEAK = 0.9  # and never louder than this peak, so normalizing never clips
EDGE_MARGIN_S = 0.25  # silence kept before the first and after the last word of a trimmed clip
PAUSE_S = 0.3  # a gap at least this long separates two utterances: a clip may be cut there


@dataclass
class TakeReport:
    ok: bool
    problems: list[str]  # what to fix, one sentence each, in the order a user should fix them
    metrics: dict[str, float] = field(default_factory=dict)  # duration_s, speech_s, speech_fraction,
    # peak, clipped_fraction, speech_dbfs, noise_floor_dbfs, snr_db

    def summary(self) -> str:
        """One line for a user: the problems, or what makes the take good."""
        if self.problems:
            return "; ".join(self.problems)
        m = self.metrics
        return (f"good take: {m['duration_s']:.1f} s with {m['speech_s']:.1f} s of speech, "
                f"voice {m['snr_db']:.0f} dB above the background")


@dataclass
class _Analysis:
    frame_db: np.ndarray  # (n,) energy of each 30 ms frame, dBFS
    speech: np.ndarray  # (n,) bool
    noise_floor_db: float

    @property
    def speech_db(self) -> float:
        if not self.speech.any():
            return SILENT_DBFS
        return _power_db(np.mean(10.0 ** (self.frame_db[self.speech] / 10.0)))


def _power_db(power: float | np.ndarray) -> float | np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (SILENT_DBFS / 10.0) / 10.0))


def _analyze(wave: np.ndarray, sample_rate: int) -> _Analysis:
    low = resample(np.asarray(wave, dtype=np.float32), sample_rate, ANALYSIS_RATE)
    size = int(ANALYSIS_RATE * ANALYSIS_FRAME_S)
    n = len(low) // size
    frames = low[: n * size].reshape(n, size)  # (n, size)
    frame_db = _power_db(np.mean(frames.astype(np.float64) ** 2, axis=1))
    if n == 0:
        return _Analysis(frame_db, np.zeros(0, dtype=bool), SILENT_DBFS)
    vad = webrtcvad.Vad(VAD_MODE)
    pcm = (np.clip(frames, -1.0, 1.0) * 32767.0).astype("<i2")
    voiced = np.array([vad.is_speech(frame.tobytes(), ANALYSIS_RATE) for frame in pcm])
    noise_floor = float(np.percentile(frame_db, 10))
    gate = max(noise_floor, QUIETEST_FLOOR_DBFS) + SPEECH_MARGIN_DB
    return _Analysis(frame_db, voiced & (frame_db > gate), noise_floor)


def check_take(wave: np.ndarray, sample_rate: int, max_seconds: float = MAX_TAKE_S) -> TakeReport:
    """Judge a recording (mono, any rate) as a voice prompt; `problems` says what to change."""
    wave = np.asarray(wave, dtype=np.float32)
    analysis = _analyze(wave, sample_rate)
    duration = len(wave) / sample_rate
    speech_s = float(analysis.speech.sum()) * ANALYSIS_FRAME_S
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    speech_db, floor_db = analysis.speech_db, analysis.noise_floor_db
    metrics = {
        "duration_s": duration,
        "speech_s": speech_s,
        "speech_fraction": speech_s / duration if duration else 0.0,
        "peak": peak,
        "clipped_fraction": float(np.mean(np.abs(wave) >= CLIP_LEVEL)) if wave.size else 0.0,
        "speech_dbfs": float(speech_db),
        "noise_floor_dbfs": floor_db,
        "snr_db": float(speech_db - floor_db) if speech_s else 0.0,
    }
    problems = []
    if duration < MIN_TAKE_S:
        problems.append(f"too short ({duration:.1f} s) — record at least {MIN_TAKE_S:.0f} s: "
                        "read the whole sentence")
    elif duration > max_seconds + 1e-6:
        problems.append(f"too long ({duration:.0f} s) — keep it under {max_seconds:.0f} s")
    if peak == 0.0 or float(analysis.frame_db.max(initial=SILENT_DBFS)) <= SILENT_DBFS:
        problems.append("the recording is silent — check that the right microphone is selected and not muted")
        return TakeReport(False, problems, metrics)
    if metrics["clipped_fraction"] > MAX_CLIPPED_FRACTION:
        percent = 100 * metrics["clipped_fraction"]
        problems.append(f"clipping ({percent:.1f} % of the samples hit full scale) — "
                        "move back from the microphone or turn its input gain down")
    if speech_s == 0.0:
        problems.append("no speech heard — the take must be someone speaking: read the sentence aloud "
                        "and check that the right microphone is selected")
    elif speech_db < MIN_SPEECH_DBFS:
        problems.append(f"too quiet (your voice at {speech_db:.0f} dBFS) — move closer to the microphone "
                        "or turn its input gain up")
    if metrics["snr_db"] < MIN_SNR_DB if speech_s else floor_db > MAX_NOISE_FLOOR_DBFS:
        problems.append(f"too much background noise (noise floor {floor_db:.0f} dBFS) — move somewhere "
                        "quieter, away from fans and traffic, and close to the microphone")
    # How much of the take is speech means little while the length, level or noise is wrong (they
    # hide words): those come first, and this only once they are fixed.
    if not problems and speech_s < MIN_SPEECH_S:
        problems.append(f"not enough speech ({speech_s:.1f} s) — read the whole sentence; "
                        f"at least {MIN_SPEECH_S:.0f} s of speech is needed")
    elif not problems and metrics["speech_fraction"] < MIN_SPEECH_FRACTION:
        problems.append(f"mostly silence (speech is {100 * metrics['speech_fraction']:.0f} % of the take) — "
                        "start reading right after pressing Record and stop when you are done")
    return TakeReport(not problems, problems, metrics)


def best_segment(wave: np.ndarray, sample_rate: int, max_seconds: float = MAX_TAKE_S) -> np.ndarray:
    """The stretch of at most `max_seconds` holding the most speech, cut in pauses, not in words.

    Speech frames closer than PAUSE_S form utterances; the best run of whole consecutive
    utterances that fits wins (only one utterance longer than the limit is cut mid-speech).
    Leading and trailing silence is trimmed to EDGE_MARGIN_S. A clip without speech is only
    shortened: check_take then says what is wrong with it.
    """
    wave = np.asarray(wave, dtype=np.float32)
    limit = int(max_seconds * sample_rate)
    speech = _analyze(wave, sample_rate).speech
    if not speech.any():
        return wave[:limit]
    hop = ANALYSIS_FRAME_S * sample_rate  # samples per analysis frame, at the clip's own rate
    margin = int(EDGE_MARGIN_S * sample_rate)
    starts, ends = _utterances(speech, gap_frames=round(PAUSE_S / ANALYSIS_FRAME_S))
    budget = limit - 2 * margin  # samples of speech span that fit with a margin at each side

    def span(i: int, j: int) -> float:  # samples from the start of utterance i to the end of j
        return (ends[j] - starts[i]) * hop

    spoken = np.concatenate([[0], np.cumsum(speech)])  # speech frames before frame k
    best, best_speech = None, -1
    j = 0
    for i in range(len(starts)):  # two pointers: the longest run of utterances from i that fits
        j = max(j, i)
        while j + 1 < len(starts) and span(i, j + 1) <= budget:
            j += 1
        run_speech = spoken[ends[j]] - spoken[starts[i]]
        if span(i, j) <= budget and run_speech > best_speech:
            best, best_speech = (i, j), run_speech
    if best is None:  # one utterance longer than the limit: the densest window of it
        counts = np.convolve(speech, np.ones(int(budget // hop)), mode="valid")
        first = int(np.argmax(counts))
        begin, end = int(first * hop), int(first * hop) + budget
    else:
        begin, end = int(starts[best[0]] * hop), int(ends[best[1]] * hop)
    return wave[max(0, begin - margin): min(len(wave), end + margin)]


def _utterances(speech: np.ndarray, gap_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) frame indices (end exclusive) of speech runs, merging gaps under gap_frames."""
    edges = np.diff(np.concatenate([[0], speech.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = np.concatenate([[True], starts[1:] - ends[:-1] >= gap_frames])  # runs that open an utterance
    return starts[keep], np.concatenate([ends[:-1][keep[1:]], ends[-1:]])


def normalize_loudness(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Scale so the speech sits at TARGET_SPEECH_DBFS, never pushing the peak above MAX_PEAK.

    Stored voices then reach the codec at one level, whatever microphone or file they came from.
    A clip without speech is returned unchanged.
    """
    wave = np.asarray(wave, dtype=np.float32)
    analysis = _analyze(wave, sample_rate)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if not analysis.speech.any() or peak == 0.0:
        return wave
    gain = min(10.0 ** ((TARGET_SPEECH_DBFS - analysis.speech_db) / 20.0), MAX_PEAK / peak)
    return (wave * gain).astype(np.float32)
