"""Is a take good enough to clone a voice from? And the clean-up that makes an imported clip one.

Pure numpy + webrtcvad (no Qt, no model), so the enrollment dialog, `michi voices add` and the
training eval judge a recording the same way and tell the user the same thing.

A take is judged by what matters for cloning, each measure from one analysis on 30 ms slices at
16 kHz (`michi_core.vad`, the enrollment check's definition of speech):
- the *noise floor* is the 10th percentile of the slice levels: the quietest moments of a take
  (the breath before the first word, the pauses) are the room, not the voice;
- a slice is *speech* when webrtcvad says so and it stands SPEECH_MARGIN_DB above that floor (or
  above QUIETEST_FLOOR_DBFS where the floor is digital silence), because webrtcvad alone calls a
  steady hiss speech now and then;
- the *speech level* is the power over the speech slices only, so leading silence does not make
  a well-recorded take look quiet; the *SNR* is the speech level over the noise floor;
- *clipping* is the share of samples at full scale.

Only takes that would really clone badly are refused (`problems`): no voice at all, too little
speech, a voice that hardly stands out of the noise, heavy clipping. A take that will clone, but
not as well as it could, passes with `warnings` that say why and what to do next time. Loudness
itself is no reason to refuse: a stored voice is normalized (`normalize_loudness`), and what
quiet recording really costs (the microphone's hiss) is what the SNR measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from michi_core.vad import SILENCE_DB, speech_slices

ANALYSIS_SLICE_MS = 30  # the longest slice webrtcvad takes: steadier decisions than 10 ms
VAD_MODE = 2  # 0 (lenient) .. 3 (strict): 2 tells voice from fan noise without losing soft consonants
SPEECH_MARGIN_DB = 6.0  # a voiced slice counts as speech only this far above the noise floor: steady
# noise varies < 1 dB between 30 ms slices, and a wider margin loses the soft half of noisy speech
SILENT_DBFS = -90.0  # below this nothing reached the microphone at all (muted or unplugged)
QUIETEST_FLOOR_DBFS = -70.0  # no real microphone chain is quieter: digital silence is gated as if this

# Refused: these clone badly whatever is done afterwards.
MIN_SPEECH_S = 1.5  # less is too little of the voice to follow (a word or two)
# The SNR is measured in the 0-8 kHz analysis band over the speech slices (the louder part of speech):
# it reads ~2-4 dB above an SNR taken on the full band over all the speech (measured on ARCTIC and
# piper speech mixed with white noise: 20 dB -> 22.5, 15 -> 18, 10 -> 13.7, 8 -> 12.4, 5 -> 10.4).
MIN_SNR_DB = 13.0  # below it the noise is as much of the prompt as the voice: the clone speaks through it
MAX_CLIPPED_FRACTION = 0.01  # 1 % of samples at full scale: harsh distortion on every loud syllable
# Warned about: these clone, but a better take would clone better.
GOOD_SPEECH_S = 3.0  # zero-shot cloners are prompted with 3-10 s of speech
GOOD_SNR_DB = 17.0  # under it the background is plainly audible and carries into the clone
WARN_CLIPPED_FRACTION = 0.001  # 0.1 %: a few flattened peaks are inaudible, more starts to rasp
QUIET_SPEECH_DBFS = -40.0  # still clones after normalizing, but the gain raises the hiss with it
GOOD_SPEECH_FRACTION = 0.4  # of the take: the rest is silence the prompt would waste
CLIP_LEVEL = 0.99  # |sample| at or above this is taken as clipped
MIN_BACKGROUND_S = 0.5  # the noise is judged only when the take has this much without speech

SUGGESTED_TAKE_S = 5.0  # what the enrollment dialog asks for: comfortably above GOOD_SPEECH_S
MAX_TAKE_S = 15.0  # longer takes only cost context positions: the clone does not improve

TARGET_SPEECH_DBFS = -20.0  # stored voices are brought to this speech level: prompts comparable
MAX_PEAK = 0.9  # and never louder than this peak, so normalizing never clips
EDGE_MARGIN_S = 0.25  # silence kept before the first and after the last word of a trimmed clip
PAUSE_S = 0.3  # a gap at least this long separates two utterances: a clip may be cut there


@dataclass
class TakeReport:
    ok: bool
    problems: list[str]  # why it is refused, one sentence each, in the order a user should fix them
    warnings: list[str] = field(default_factory=list)  # what would make a better take (ok or not)
    metrics: dict[str, float] = field(default_factory=dict)  # duration_s, speech_s, speech_fraction,
    # peak, clipped_fraction, speech_dbfs, noise_floor_dbfs, snr_db

    def summary(self) -> str:
        """One line for a user: why it is refused, or what the take is and what could be better."""
        if self.problems:
            return "; ".join(self.problems)
        m = self.metrics
        verdict = "usable take" if self.warnings else "good take"
        line = (f"{verdict}: {m['duration_s']:.1f} s with {m['speech_s']:.1f} s of speech, "
                f"voice {m['snr_db']:.0f} dB above the background")
        return "; ".join([line, *self.warnings])


@dataclass
class _Analysis:
    level_db: np.ndarray  # (n,) level of each 30 ms slice, dBFS
    speech: np.ndarray  # (n,) bool
    noise_floor_db: float

    @property
    def speech_db(self) -> float:
        if not self.speech.any():
            return SILENT_DBFS
        return float(10.0 * np.log10(np.mean(10.0 ** (self.level_db[self.speech] / 10.0))))


def _analyze(wave: np.ndarray, sample_rate: int) -> _Analysis:
    slices = speech_slices(wave, sample_rate, slice_ms=ANALYSIS_SLICE_MS, aggressiveness=VAD_MODE,
                           margin_db=SPEECH_MARGIN_DB, quietest_floor_dbfs=QUIETEST_FLOOR_DBFS)
    return _Analysis(slices.level_db, slices.speech, slices.noise_floor_db)


def check_take(wave: np.ndarray, sample_rate: int, max_seconds: float = MAX_TAKE_S) -> TakeReport:
    """Judge a recording (mono, any rate) as a voice prompt: refused only when it would clone
    badly (`problems`), with what could be better in `warnings`; the numbers are in each."""
    wave = np.asarray(wave, dtype=np.float32)
    analysis = _analyze(wave, sample_rate)
    duration = len(wave) / sample_rate
    speech_s = float(analysis.speech.sum()) * ANALYSIS_SLICE_MS / 1000
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    speech_db, floor_db = analysis.speech_db, analysis.noise_floor_db
    loudest_db = float(analysis.level_db.max(initial=SILENCE_DB))
    m = {
        "duration_s": duration,
        "speech_s": speech_s,
        "speech_fraction": speech_s / duration if duration else 0.0,
        "peak": peak,
        "clipped_fraction": float(np.mean(np.abs(wave) >= CLIP_LEVEL)) if wave.size else 0.0,
        "speech_dbfs": speech_db,
        "noise_floor_dbfs": floor_db,
        "snr_db": speech_db - floor_db if speech_s else 0.0,
    }
    problems: list[str] = []
    warnings: list[str] = []
    if duration > max_seconds + 1e-6:
        problems.append(f"too long ({duration:.0f} s) — keep it under {max_seconds:.0f} s")
    if peak == 0.0 or loudest_db <= SILENT_DBFS:
        problems.append(f"the recording is silent (its loudest moment is at {loudest_db:.0f} dBFS) "
                        "— check that the right microphone is selected and not muted")
        return TakeReport(False, problems, warnings, m)
    if m["clipped_fraction"] > MAX_CLIPPED_FRACTION:
        problems.append(f"clipping ({100 * m['clipped_fraction']:.1f} % of the samples at full scale, "
                        f"{100 * MAX_CLIPPED_FRACTION:.0f} % at most) — move back from the microphone "
                        "or turn its input gain down")
    elif m["clipped_fraction"] > WARN_CLIPPED_FRACTION:
        warnings.append(f"a little clipping ({100 * m['clipped_fraction']:.2f} % of the samples at full "
                        "scale) — next time, turn the input gain down a little")
    if speech_s == 0.0:
        problems.append(f"no speech heard in {duration:.1f} s (a steady sound at {floor_db:.0f} dBFS, "
                        f"nothing {SPEECH_MARGIN_DB:.0f} dB above it) — the take must be someone speaking: "
                        "read the sentence aloud and check that the right microphone is selected")
        return TakeReport(False, problems, warnings, m)
    if duration - speech_s < MIN_BACKGROUND_S:
        pass  # no pauses to hear the room in: the "floor" would be the voice's own soft sounds
    elif m["snr_db"] < MIN_SNR_DB:
        problems.append(f"too much background noise: the voice is {m['snr_db']:.0f} dB above it "
                        f"(background {floor_db:.0f} dBFS, voice {speech_db:.0f} dBFS; at least "
                        f"{MIN_SNR_DB:.0f} dB is needed) — move somewhere quieter, away from fans and "
                        "traffic, and close to the microphone")
    elif m["snr_db"] < GOOD_SNR_DB:
        warnings.append(f"some background noise: the voice is {m['snr_db']:.0f} dB above it "
                        f"(background {floor_db:.0f} dBFS) — the clone may carry some of it; a quieter "
                        "room helps")
    if speech_s < MIN_SPEECH_S:
        problems.append(f"too short: {duration:.1f} s with {speech_s:.1f} s of speech — at least "
                        f"{MIN_SPEECH_S:.1f} s of speech is needed; read the whole sentence")
    elif speech_s < GOOD_SPEECH_S:
        warnings.append(f"short: {speech_s:.1f} s of speech — the clone follows a voice better from "
                        f"{GOOD_SPEECH_S:.0f} s or more")
    if speech_db < QUIET_SPEECH_DBFS:
        warnings.append(f"quiet (the voice at {speech_db:.0f} dBFS) — it is raised when saved; next time "
                        "move closer to the microphone or turn its input gain up")
    if not problems and m["speech_fraction"] < GOOD_SPEECH_FRACTION:
        warnings.append(f"mostly silence (speech is {100 * m['speech_fraction']:.0f} % of the take) — start "
                        "reading right after pressing Record and stop when you are done")
    return TakeReport(not problems, problems, warnings, m)


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
    hop = ANALYSIS_SLICE_MS / 1000 * sample_rate  # samples per analysis slice, at the clip's own rate
    margin = int(EDGE_MARGIN_S * sample_rate)
    starts, ends = _utterances(speech, gap_frames=round(PAUSE_S * 1000 / ANALYSIS_SLICE_MS))
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
