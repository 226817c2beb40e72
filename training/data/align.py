"""Labels and alignment: Whisper word timings -> the known text's words -> one token slot per frame.

1. `Aligner.transcribe` runs faster-whisper (packaged Whisper base, or tiny.en for speed) with
   word timestamps, corrected by the model's measured timing offset. No prompt: prompting with
   the known text would make ASR agree with it and the filter below would pass everything.
   `align_packed` puts ~28 s of short clips into one call: Whisper's encoder always runs on a
   30 s window, so this is ~3x faster on CPU.
2. `align_text` matches the recognised words to the known text in spoken form ("2 lbs" vs "two
   pounds") by edit distance. Matched and substituted words lend their times to the known words;
   the rest are interpolated. The edit count over the known spoken words is the WER (a compound
   split differently or a near-identical spelling of a made-up name costs nothing), and
   utterances above `max_wer` are dropped (filter_reason "asr_mismatch") and counted.
3. `frame_tokens` maps words to backbone tokens and tokens to 80 ms frames: a word's tokens start
   in the frame where the word starts, one token per frame, PAD elsewhere; tokens that do not
   fit before the next word are pushed into the next free frames (the inner-monologue target).

Shapes: T - frames, N - known words.
"""

from __future__ import annotations

import difflib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from michi_core.audio import load_audio, resample
from michi_core.model.config import CodecConfig
from michi_core.model.tokenizer import Tokenizer
from michi_core.model.whisper import WHISPER_RATE, WORD_TIME_OFFSET_S, whisper_model_dir

from .manifest import Manifest
from .normalize import comparison_words
from .parallel import run_parallel

log = logging.getLogger(__name__)

DEFAULT_MAX_WER = 0.25
PACK_SECONDS = 28.0  # audio (clips + gaps) per Whisper call when packing; its window is 30 s
PACK_GAP_S = 1.0
Word = tuple[str, float, float]  # (word as written, start seconds, end seconds)


class Aligner:
    def __init__(self, model: str = "base", threads: int = 0):
        from faster_whisper import WhisperModel

        self.name = model
        self.offset_s = WORD_TIME_OFFSET_S.get(model, 0.0)
        self.model = WhisperModel(str(whisper_model_dir(model)), device="cpu", compute_type="int8",
                                  cpu_threads=threads)

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> list[Word]:
        """(n,) float32 speech -> recognised words with times in seconds."""
        segments, _ = self.model.transcribe(resample(audio, sample_rate, WHISPER_RATE), language="en",
                                            beam_size=1, temperature=0.0, word_timestamps=True,
                                            condition_on_previous_text=False)
        words: list[Word] = []
        for piece in (w for s in segments for w in s.words or []):
            start, end = max(0.0, piece.start + self.offset_s), max(0.0, piece.end + self.offset_s)
            if words and _continues(words[-1][0], piece.word):
                words[-1] = (words[-1][0] + piece.word.strip(), words[-1][1], end)
            elif piece.word.strip():
                words.append((piece.word.strip(), start, end))
        return words

    def align(self, audio: np.ndarray, sample_rate: int, text: str) -> TextAlignment:
        return align_text(text, self.transcribe(audio, sample_rate))

    def align_packed(self, clips: list[tuple[np.ndarray, str]], sample_rate: int,
                     gap_s: float = PACK_GAP_S) -> list[TextAlignment]:
        """Several short utterances in one Whisper call, separated by gap_s of silence (a 3 s
        clip costs as much as a 30 s one). Recognised words go back to the clip their midpoint
        falls in."""
        gap = np.zeros(int(gap_s * sample_rate), np.float32)
        pieces: list[np.ndarray] = []
        spans: list[tuple[float, float]] = []
        offset = 0
        for audio, _ in clips:
            spans.append((offset / sample_rate, (offset + len(audio)) / sample_rate))
            pieces += [audio, gap]
            offset += len(audio) + len(gap)
        heard = self.transcribe(np.concatenate(pieces), sample_rate)
        results = []
        for (start, end), (_, text) in zip(spans, clips):
            mine = [(word, max(0.0, s - start), min(end, e) - start) for word, s, e in heard
                    if start - gap_s / 2 <= (s + e) / 2 < end + gap_s / 2]
            results.append(align_text(text, mine))
        return results


def _continues(previous: str, piece: str) -> bool:
    """Whisper pieces that belong to the previous word: "7" + ":30", "$26" + ".50", "1.15" + " am"."""
    if not piece.startswith(" "):
        return True
    clock_suffix = piece.strip().lower().rstrip(".") in ("am", "pm", "a.m", "p.m")
    return clock_suffix and (previous[-1:].isdigit() or previous.lower() == "o'clock")


# -- known text <-> recognised words ------------------------------------------------------------------
@dataclass
class TextAlignment:
    words: list[Word]  # the known text's words, timed
    errors: list[int]  # (N,) edit errors attributed to each known word
    spoken: list[int]  # (N,) spoken words each known word expands to ("2021" -> 4)
    recognized: str  # what ASR heard

    @property
    def wer(self) -> float:
        return error_rate(self.errors, self.spoken)


def error_rate(errors: list[int], spoken: list[int]) -> float:
    total = sum(spoken)
    return sum(errors) / total if total else float(sum(errors) > 0)


def align_text(text: str, recognized: list[Word]) -> TextAlignment:
    written = text.split()
    ref = [(index, token) for index, word in enumerate(written) for token in comparison_words(word)]
    hyp: list[tuple[str, float, float]] = []
    for word, start, end in recognized:
        tokens = comparison_words(word)
        step = (end - start) / max(1, len(tokens))  # a word heard as "2021" spreads over its 4 spoken words
        hyp += [(token, start + k * step, start + (k + 1) * step) for k, token in enumerate(tokens)]

    errors = [0] * len(written)
    token_times: list[tuple[float, float] | None] = [None] * len(ref)
    last_word = 0
    for ref_ids, hyp_ids, cost in _steps([t for _, t in ref], [t for t, _, _ in hyp]):
        if ref_ids:
            last_word = ref[ref_ids[-1]][0]
        if ref_ids and hyp_ids:
            for i in ref_ids:
                token_times[i] = (hyp[hyp_ids[0]][1], hyp[hyp_ids[-1]][2])
        if written:
            errors[last_word] += cost  # charged to the nearest known word

    starts: list[float | None] = [None] * len(written)
    ends: list[float | None] = [None] * len(written)
    for (index, _), times in zip(ref, token_times):
        if times is not None:
            starts[index] = times[0] if starts[index] is None else min(starts[index], times[0])
            ends[index] = times[1] if ends[index] is None else max(ends[index], times[1])
    words = _interpolate(written, starts, ends)
    spoken = [len(comparison_words(word)) for word in written]
    return TextAlignment(words, errors, spoken, " ".join(w for w, _, _ in recognized))


def _steps(ref: list[str], hyp: list[str]) -> list[tuple[list[int], list[int], int]]:
    """The edit path as (ref ids, hyp ids, errors) steps, forgiving what is spelling, not hearing:
    a compound split or joined ("oakhaven" / "oak haven") and a near-identical spelling of a name
    ASR cannot know ("redmoor" / "redmore") cost nothing."""
    steps = [([i] if i is not None else [], [j] if j is not None else [],
              0 if i is not None and j is not None and _same_word(ref[i], hyp[j]) else 1)
             for i, j in _edit_path(ref, hyp)]
    merged: list[tuple[list[int], list[int], int]] = []
    for step in steps:
        if merged:
            (r1, h1, c1), (r2, h2, c2) = merged[-1], step
            joined_ref, joined_hyp = "".join(ref[i] for i in r1 + r2), "".join(hyp[j] for j in h1 + h2)
            one_side_single = len(r1 + r2) == 1 or len(h1 + h2) == 1
            if c1 + c2 > 0 and one_side_single and r1 + r2 and h1 + h2 and joined_ref == joined_hyp:
                merged[-1] = (r1 + r2, h1 + h2, 0)
                continue
        merged.append(step)
    return merged


def _same_word(a: str, b: str) -> bool:
    if a == b:
        return True
    return min(len(a), len(b)) >= 5 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def _edit_path(ref: list[str], hyp: list[str]) -> list[tuple[int | None, int | None]]:
    """Levenshtein alignment: pairs (i, j) for match/substitution, (i, None) deletion, (None, j) insertion."""
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    hyp_array = np.array(hyp, dtype=object)
    columns = np.arange(m + 1)
    for i in range(1, n + 1):
        row = np.empty(m + 1, dtype=np.int32)  # (m + 1,) best of diagonal / deletion
        row[0] = i
        row[1:] = np.minimum(cost[i - 1, :-1] + (hyp_array != ref[i - 1]), cost[i - 1, 1:] + 1)
        # insertions run left to right: cost[i, j] = min over k <= j of row[k] + (j - k)
        cost[i] = np.minimum.accumulate(row - columns) + columns
    path: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            path.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            path.append((i - 1, None))
            i -= 1
        else:
            path.append((None, j - 1))
            j -= 1
    return path[::-1]


def _interpolate(written: list[str], starts: list[float | None], ends: list[float | None]) -> list[Word]:
    """Words no recognised word matched start where the previous timed word ended."""
    timed = [k for k, s in enumerate(starts) if s is not None]
    words: list[Word] = []
    for k, word in enumerate(written):
        if starts[k] is not None:
            words.append((word, round(starts[k], 3), round(ends[k], 3)))
            continue
        before = max((t for t in timed if t < k), default=None)
        after = min((t for t in timed if t > k), default=None)
        start = ends[before] if before is not None else (starts[after] if after is not None else 0.0)
        end = starts[after] if after is not None else start
        words.append((word, round(start, 3), round(max(start, end), 3)))
    return words


# -- words -> frames ----------------------------------------------------------------------------------
def frame_tokens(words: list[Word], tokenizer: Tokenizer, frame_rate: float, num_frames: int,
                 eos_at: list[float] = ()) -> np.ndarray:
    """Known words with start times -> (T,) int64 text stream: one token per frame, PAD elsewhere.

    A word's tokens go into the frame containing its start and the frames after it; a frame
    already taken (the previous word overflowed) pushes them on to the next free frames. eos_at
    lists times where a turn ends: EOS goes into the first free frame from there. T grows past
    num_frames only if tokens overflow the end.
    """
    slots: list[int] = [tokenizer.pad_id] * num_frames
    next_free = 0
    events = [(start, 0, k) for k, (_, start, _) in enumerate(words)] + [(t, 1, -1) for t in eos_at]
    for time_s, is_eos, k in sorted(events):
        ids = [tokenizer.eos_id] if is_eos else tokenizer.encode(words[k][0] if k == 0 else " " + words[k][0])
        frame = max(int(time_s * frame_rate), next_free)
        for token in ids:
            while frame >= len(slots):
                slots.append(tokenizer.pad_id)
            slots[frame] = token
            frame += 1
        next_free = frame
    return np.asarray(slots, dtype=np.int64)


# -- `michi-train data align` ------------------------------------------------------------------------------
_aligner: Aligner | None = None
_sample_rate = CodecConfig().sample_rate


def _init_worker(model: str, threads: int, sample_rate: int) -> None:
    global _aligner, _sample_rate
    _aligner = Aligner(model, threads=threads)
    _sample_rate = sample_rate


def _align_pack(pack: list[tuple[str, str, str, float]]) -> list[TextAlignment]:
    assert _aligner is not None, "worker not initialised"
    clips = [(load_audio(path, _sample_rate), text) for _, path, text, _ in pack]
    return _aligner.align_packed(clips, _sample_rate)


def pack_by_duration(items: list, durations: list[float], max_s: float,
                     gap_s: float = PACK_GAP_S) -> list[list]:
    """Consecutive items grouped so each group's audio plus gaps stays within max_s (0: one each)."""
    packs: list[list] = []
    length = 0.0
    for item, duration in zip(items, durations):
        if not packs or length + duration + gap_s > max_s:
            packs.append([])
            length = 0.0
        packs[-1].append(item)
        length += duration + gap_s
    return packs


def build_alignment(corpus_dir: str | Path, whisper: str = "base", max_wer: float = DEFAULT_MAX_WER,
                    workers: int = 1, pack_seconds: float = PACK_SECONDS, codec: CodecConfig | None = None,
                    progress: bool = False) -> dict:
    """Align every utterance that has no alignment yet; drop those ASR disagrees with."""
    from tqdm import tqdm

    codec = codec or CodecConfig()
    manifest = Manifest(corpus_dir)
    where = "kind = 'utterance' and alignment is null and filter_reason is null"
    todo = [(row["id"], str(manifest.resolve(row["path"])), row["text"], row["duration"])
            for row in manifest.rows(where)]
    packs = pack_by_duration(todo, [item[3] for item in todo], pack_seconds)
    whisper_model_dir(whisper)  # assemble/check once here, not in every worker at the same time
    counts = {"aligned": 0, "dropped": 0, "errors": 0, "audio_s": 0.0}
    bar = tqdm(total=len(todo), unit="utt", disable=not progress, desc=f"align ({whisper})")

    def on_result(pack, results) -> None:
        if isinstance(results, Exception):
            log.warning("alignment failed for %s: %s", [item[0] for item in pack], results)
            for item in pack:
                manifest.update(item[0], filter_reason="align_error")
            counts["errors"] += len(pack)
            bar.update(len(pack))
            return
        for (item_id, _, _, duration), result in zip(pack, results):
            keep = result.wer <= max_wer
            manifest.update(item_id, alignment=[list(w) for w in result.words], wer=round(result.wer, 4),
                            asr_text=result.recognized, aligner=whisper,
                            filter_reason=None if keep else "asr_mismatch")
            counts["aligned" if keep else "dropped"] += 1
            counts["audio_s"] += duration
        bar.update(len(pack))

    started = time.perf_counter()
    if packs:
        threads = max(1, (os.cpu_count() or 1) // workers)
        run_parallel(packs, _align_pack, workers=workers, initializer=_init_worker,
                     initargs=(whisper, threads, codec.sample_rate), on_result=on_result)
    bar.close()
    wall = time.perf_counter() - started
    checked = counts["aligned"] + counts["dropped"]
    summary = {**counts, "wall_s": wall, "dropped_fraction": counts["dropped"] / checked if checked else 0.0,
               "audio_hours_per_wall_minute": counts["audio_s"] / 3600 / (wall / 60) if wall else 0.0}
    log.info("align: %s", summary)
    return summary
