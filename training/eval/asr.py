"""Intelligibility: Whisper transcripts scored against the known text by word error rate.

Both sides are compared in spoken form (lowercase words, numbers and abbreviations said out,
contractions opened: training/data/normalize.py), so "2 lbs" read as "two pounds" is no error.
The reference is always the text the audio was made from, never another transcript: the WER of
the original recordings is the floor that resynthesized or generated speech is compared with.
"""

from __future__ import annotations

import numpy as np

from michi_core.audio import resample
from training.data.align import WHISPER_RATE, whisper_model_dir
from training.data.normalize import comparison_words


def scoring_text(text: str) -> str:
    """"It's $3." -> "it is three dollars": the words WER counts."""
    return " ".join(w for word in text.split() for w in comparison_words(word))


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (jiwer: all edits over all reference words) on spoken-form words; pairs with an
    empty reference are left out (there is nothing to recognise)."""
    import jiwer

    pairs = [(scoring_text(r), scoring_text(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    assert pairs, "word_error_rate needs at least one non-empty reference"
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


class Transcriber:
    """Whisper (faster-whisper, int8 on CPU): "base" by default, "tiny.en" for speed, or a folder."""

    def __init__(self, whisper: str = "base"):
        from faster_whisper import WhisperModel

        self.name = whisper
        self.model = WhisperModel(str(whisper_model_dir(whisper)), device="cpu", compute_type="int8")

    def __call__(self, audio: np.ndarray, sample_rate: int) -> str:
        """(n,) float32 speech -> what Whisper hears (greedy, no prompt: it must not know the text)."""
        segments, _ = self.model.transcribe(resample(audio, sample_rate, WHISPER_RATE), language="en", beam_size=1,
                                            temperature=0.0, condition_on_previous_text=False)
        return " ".join(segment.text.strip() for segment in segments).strip()
