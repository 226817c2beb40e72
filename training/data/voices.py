"""The synthetic speakers: who they are (speaker ids), and how to make one speak at 24 kHz.

Speaker ids are stable strings stored in the manifest: "piper:joe" (the neural voice) and
"espeak:<accent>+<variant>" such as "espeak:en-gb-scotland+f2". An espeak speaker is an accent
(its phoneme rules and vowels) times a variant (formants, voicing, breathiness); pitch and rate
jitter per utterance on top do not make a new speaker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from michi_core.audio import resample, trim_silence

from .espeak import TimedWord
from .normalize import speakable

PIPER_SPEAKERS = ("piper:joe",)
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc", "en-029", "en-gb-x-gbclan")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "Annie",
                   "Andy", "edward", "linda", "steph")


def espeak_speakers() -> list[str]:
    return [f"espeak:{accent}+{variant}" for accent in ESPEAK_ACCENTS for variant in ESPEAK_VARIANTS]


def catalog() -> list[str]:
    """Every speaker id this module can voice, piper first."""
    return list(PIPER_SPEAKERS) + espeak_speakers()


def parse_voices(specs: list[str] | None) -> list[str]:
    """CLI voice specs -> speaker ids. "piper" and "espeak" name whole families, "espeak:en-us"
    every variant of one accent, "espeak:en-us+f2" one speaker. None or [] means all."""
    speakers: list[str] = []
    for spec in specs or ["piper", "espeak"]:
        if spec == "piper":
            speakers += PIPER_SPEAKERS
        elif spec == "espeak":
            speakers += espeak_speakers()
        elif spec.startswith("espeak:") and "+" not in spec:
            accent = spec.split(":", 1)[1]
            speakers += [f"espeak:{accent}+{variant}" for variant in ESPEAK_VARIANTS]
        elif spec.startswith("espeak:"):
            _check_espeak_variant(spec.split("+", 1)[1])
            speakers.append(spec)
        elif spec in PIPER_SPEAKERS:
            speakers.append(spec)
        else:
            raise ValueError(f"unknown voice {spec!r}: use 'piper', 'espeak', 'espeak:<accent>', "
                             f"'espeak:<accent>+<variant>' or one of {PIPER_SPEAKERS}")
    return list(dict.fromkeys(speakers))


def _check_espeak_variant(variant: str) -> None:
    # espeak silently ignores an unknown variant and speaks with the default voice: refuse instead.
    import espeakng_loader

    variants_dir = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    if not (variants_dir / variant).exists():
        raise ValueError(f"espeak-ng has no voice variant {variant!r} (see {variants_dir})")


@dataclass
class Speech:
    audio: np.ndarray  # (n,) float32 at the codec sample rate, silence trimmed to ~0.1 s each side
    speaker: str
    words: list[TimedWord] | None  # the synthesizer's own word starts, when it reports them (espeak)
    params: dict = field(default_factory=dict)  # the per-utterance prosody actually used


class VoiceBank:
    """Loads synthesizers on first use (one piper session, the espeak library) and speaks any
    catalog speaker with per-utterance prosody drawn from the caller's rng."""

    def __init__(self, sample_rate: int, threads: int = 0):
        self.sample_rate = sample_rate
        self.threads = threads
        self._piper = None

    def speak(self, speaker: str, text: str, rng: random.Random) -> Speech:
        """Say text (as written: "2 lbs"); the synthesizer gets its spoken form ("two pounds")."""
        family, _, name = speaker.partition(":")
        spoken_text, counts = speakable(text)
        if family == "piper":
            params = {"length_scale": round(rng.uniform(0.85, 1.2), 3),
                      "noise_scale": round(rng.uniform(0.5, 0.8), 3),
                      "noise_w_scale": round(rng.uniform(0.6, 1.0), 3)}
            result = self._piper_synth().synthesize(spoken_text, **params)
            audio, words = result.audio, None
            native_rate = result.sample_rate
        elif family == "espeak":
            from .espeak import Espeak

            params = {"rate_wpm": rng.randint(140, 200), "pitch": rng.randint(35, 65),
                      "pitch_range": rng.randint(30, 70)}
            result = Espeak.get().synthesize(spoken_text, name, **params)
            audio, words = result.audio, _written_word_times(text, counts, result.words)
            native_rate = result.sample_rate
        else:
            raise ValueError(f"unknown speaker id {speaker!r}; see voices.catalog()")
        audio = resample(audio, native_rate, self.sample_rate)
        audio, cut = trim_silence(audio, self.sample_rate)
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        gain = rng.uniform(0.3, 0.9) / peak if peak > 0 else 1.0  # level varies like real recordings
        params["gain"] = round(gain, 4)
        if words is not None:
            shift, duration = cut / self.sample_rate, len(audio) / self.sample_rate
            words = [TimedWord(w.text, min(max(0.0, w.start - shift), duration),
                               min(max(0.0, w.end - shift), duration)) for w in words]
        return Speech((audio * gain).astype(np.float32), speaker, words, params)

    def _piper_synth(self):
        if self._piper is None:
            from .piper_voice import PiperSynth

            self._piper = PiperSynth(threads=self.threads)
        return self._piper


def _written_word_times(text: str, counts: list[int], spoken: list[TimedWord]) -> list[TimedWord]:
    """Times of the spoken words ("two", "pounds") -> times of the written words ("2", "lbs")."""
    assert len(spoken) == sum(counts), "the synthesizer must report one word per spoken word"
    words: list[TimedWord] = []
    offset = 0
    for word, count in zip(text.split(), counts):
        if count:
            words.append(TimedWord(word, spoken[offset].start, spoken[offset + count - 1].end))
        else:  # said nothing ("—"): an instant where the next word starts
            instant = spoken[offset].start if offset < len(spoken) else (spoken[-1].end if spoken else 0.0)
            words.append(TimedWord(word, instant, instant))
        offset += count
    return words
