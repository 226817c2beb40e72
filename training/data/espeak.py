"""espeak-ng through its C API (the library inside the `espeakng-loader` wheel), with word timings.

espeak-ng has no Python synthesis API, so we call it through ctypes in synchronous mode: the synth
callback receives the audio in blocks together with events, and the WORD events carry the text
position and the audio time of every word start. Those word starts are exact (they are where the
synthesizer placed the word), which makes espeak the ground truth for alignment tests.

The library keeps global state, so one process holds one engine; `Espeak.get()` returns it.
Worker processes each get their own.
"""

from __future__ import annotations

import ctypes
import re
import threading
from dataclasses import dataclass

import numpy as np

from michi_core.audio import int16_to_float

# espeak_AUDIO_OUTPUT / flags / event types from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position of the word in the input
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of this synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # union { int number; const char *name; char string[8]; }
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass
class TimedWord:
    text: str  # the word as written in the input ("lbs", "3rd,")
    start: float  # seconds from the start of the audio
    end: float


@dataclass
class EspeakResult:
    audio: np.ndarray  # (n,) float32 at sample_rate
    sample_rate: int
    words: list[TimedWord]  # one per whitespace-separated word of the input text


class Espeak:
    """The process's espeak-ng engine. Not re-entrant: calls are serialised by a lock."""

    _instance: Espeak | None = None

    @classmethod
    def get(cls) -> Espeak:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path,
                                                       _INITIALIZE_DONT_EXIT)
        assert self.sample_rate > 0, f"espeak-ng failed to initialise with data at {data_path!r}"
        self._blocks: list[np.ndarray] = []
        self._word_events: list[tuple[int, float]] = []  # (0-based char position, seconds)
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: C holds only the pointer
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _on_synth(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._blocks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_WORD:
                self._word_events.append((events[i].text_position - 1, events[i].audio_position / 1000))
            i += 1
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: str, rate_wpm: int = 175, pitch: int = 50,
                   pitch_range: int = 50) -> EspeakResult:
        """Speak text with a voice such as "en-us+m3"; rate in words per minute (80-450)."""
        with self._lock:
            error = self._lib.espeak_SetVoiceByName(voice.encode())
            if error != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r} (error {error}); try 'en-us+m3'")
            for param, value in ((_PARAM_RATE, rate_wpm), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._blocks, self._word_events = [], []
            data = text.encode("utf-8")
            error = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            assert error == 0, f"espeak_Synth failed with error {error}"
            self._lib.espeak_Synchronize()
            audio = int16_to_float(np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.int16))
            events = self._word_events
        duration = len(audio) / self.sample_rate
        words = _words_from_events(text, events, duration)
        return EspeakResult(audio.astype(np.float32), self.sample_rate, words)


def _words_from_events(text: str, events: list[tuple[int, float]], duration: float) -> list[TimedWord]:
    """Attach espeak WORD events to the input's whitespace-separated words.

    A word may get several events (numbers are spoken as several words: "2021" -> four events), and
    an event may point at the space before its word; the earliest event at or after the word's
    start, before the next word's start, marks the word. Words espeak did not speak (a lone "-")
    take the start of the next spoken word.
    """
    spans = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    starts: list[float | None] = [None] * len(spans)
    for char_pos, seconds in events:
        index = next((i for i, (_, end, _) in enumerate(spans) if end > char_pos), None)
        if index is not None and (starts[index] is None or seconds < starts[index]):
            starts[index] = seconds
    filled: list[float] = []
    following = duration
    for start in reversed(starts):
        following = start if start is not None else following
        filled.append(following)
    filled.reverse()
    ends = filled[1:] + [duration]
    return [TimedWord(word, start, max(start, end)) for (_, _, word), start, end in zip(spans, filled, ends)]
