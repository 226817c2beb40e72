"""Hearing: the user's words as text while they talk, from a pretrained recognizer, off the step.

The listen head's own text was never trained well enough to tell the backbone what was said, so
the words come from Whisper (faster-whisper, CTranslate2, int8) instead. No streaming recognizer
with good accuracy ships its weights offline, so Whisper is streamed the usual way:

1. **Utterances.** The user's 24 kHz frames are resampled to 16 kHz and scored by Silero VAD
   (v6, the ONNX file faster-whisper ships: no extra dependency), 32 ms at a time, carrying its
   LSTM state. Speech opens an utterance (with `pre_roll_s` of audio before it); `end_silence_s`
   below the silence threshold closes it. Bursts with less than `min_speech_s` voiced are dropped
   unheard (a cough, a click), and Whisper never runs on audio the VAD calls silence.
2. **Passes while the user speaks.** Every `pass_every_s` of new speech the whole utterance so
   far is decoded again (greedy, word timestamps). A word is committed once two successive passes
   agree on it (LocalAgreement-2: the longest common prefix of the uncommitted words) and it ends
   `edge_s` before the decoded audio does: a word at the moving edge of the audio is the one
   Whisper still changes its mind about, and two passes can agree on the same wrong guess. Whisper's encoder
   always runs on a 30 s window, most of it padding for an utterance of a few seconds; here it
   sees `window_s` (15 s) or the utterance plus 1 s, whichever is longer (whisper.cpp's
   `audio_ctx`): ~2x cheaper per pass (10 s: 3x), with the same words on real and synthetic
   speech as the full window. Shorter is worse: base wrote "gregs in" for the real recording's
   "Gregson" in 1 of 15 paddings at 10 s (0 at 15, 20, 30 s), and a 3 s window made tiny.en loop.
3. **Final pass.** When the utterance closes it is decoded once more and every word not yet
   committed is committed, then the utterance's whole text is reported (RAG's query).
4. **No invented words.** Besides the VAD gate, a segment is dropped when Whisper itself doubts
   it: no-speech probability above `no_speech_max` unless its words are sure (Whisper's own rule,
   stricter), an average log-probability below `logprob_min` (noise, another language), or a compression ratio
   above `compression_max` (the looping "thank you thank you" hallucination). A multilingual model
   (base) also says which language it heard: not English, no words (it would translate).

Everything runs in one daemon thread: `feed()` only copies a frame into a queue, `poll()` only
drains the words found so far, so the 80 ms step never waits for the recognizer. Words carry the
frame index at which they became known (the last frame fed by then) and their audio time. A
recognizer that raises is logged and the hearing starts over (state dropped, model reloaded after
`restart_after_s`); the call goes on.

Times are seconds of the user's stream since the hearing (re)started; frame t covers
[t * frame_s, (t + 1) * frame_s).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import soxr

from michi_core.model.whisper import WHISPER_RATE, WORD_TIME_OFFSET_S, whisper_model_dir

log = logging.getLogger(__name__)

VAD_CHUNK = 512  # Silero's window at 16 kHz (32 ms)
VAD_CONTEXT = 64  # samples of the previous window it sees in front of each one


@dataclass
class HearingSettings:
    model: str = "base"  # "base", "tiny.en" or a CTranslate2 Whisper folder (base: see listen_bench.py)
    device: str = "cpu"  # "cuda" puts Whisper on the GPU next to the model
    cpu_threads: int = 1  # the step keeps the other core: Whisper with 2 threads starves it
    speech_threshold: float = 0.5  # Silero probability that opens speech
    silence_threshold: float = 0.35  # below this a window is silence (hysteresis, as Silero's own)
    end_silence_s: float = 0.4  # silence that closes an utterance: shorter splits sentences at commas
    min_speech_s: float = 0.25  # voiced time below which an utterance is dropped unheard
    pre_roll_s: float = 0.25  # audio kept before the VAD fires: word onsets are quiet
    first_pass_s: float = 0.8  # no partial pass on less audio: Whisper guesses at half words
    pass_every_s: float = 0.5  # new audio between partial passes
    edge_s: float = 0.8  # a partial pass commits no word ending this close to its audio's end: with
    # less right context base heard "in" for "and" and "Greg's in" for "Gregson" (ARCTIC), twice in a row
    max_utterance_s: float = 25.0  # Whisper's window is 30 s: longer speech is closed here
    logprob_min: float = -1.0  # segments Whisper is less sure of are dropped (noise, another language)
    no_speech_max: float = 0.6  # and a segment Whisper calls likely non-speech...
    confident_logprob: float = -0.5  # ...counts only if it is this sure of the words
    compression_max: float = 2.4  # gzip ratio above which a segment is a repetition loop
    language_min: float = 0.5  # a multilingual model this sure of another language: no words
    window_s: float = 15.0  # encoder window for short utterances (30 = Whisper's own, see above)
    restart_after_s: float = 1.0  # wait before reloading a recognizer that raised
    max_backlog_s: float | None = None  # a session stepping faster than real time (`michi chat` on a
    # file) waits in feed() while more than this much audio is unheard, so memory stays bounded; a
    # live call (None) never waits: the step must not


@dataclass(frozen=True)
class RecognizedWord:
    text: str  # as written, with its punctuation, no surrounding spaces
    start_s: float  # seconds into the audio the recognizer was given
    end_s: float


@dataclass(frozen=True)
class HeardWord:
    text: str  # as written ("sharply,"), no surrounding spaces
    start_s: float  # audio time in the user's stream
    end_s: float
    known_frame: int  # the last frame fed when the word became known (-1: before any)
    final: bool  # True: from the utterance's last pass; False: two passes agreed on it
    utterance: int  # which utterance of the call (0, 1, ...)


@dataclass(frozen=True)
class HeardUtterance:
    text: str  # every committed word, joined with spaces
    start_s: float
    end_s: float
    known_frame: int
    index: int


class Recognizer(Protocol):
    def transcribe(self, audio: np.ndarray) -> list[RecognizedWord]:
        """(n,) float32 at 16 kHz -> the words it is confident in, times relative to the audio."""


class WhisperRecognizer:
    """faster-whisper on one utterance, keeping only the segments Whisper itself is sure of."""

    def __init__(self, settings: HearingSettings | None = None):
        from faster_whisper import WhisperModel

        class WindowedWhisper(WhisperModel):
            """Its encoder sees the first `window_frames` mel frames of faster-whisper's 30 s window."""

            window_frames = 3000
            last_encoding = None  # the encoder output of the last window (for language detection)

            def encode(self, features: np.ndarray):
                self.last_encoding = super().encode(features[..., :self.window_frames])
                return self.last_encoding

        self.settings = s = settings or HearingSettings()
        self.offset_s = WORD_TIME_OFFSET_S.get(s.model, 0.0)
        self.model = WindowedWhisper(str(whisper_model_dir(s.model)), device=s.device,
                                     compute_type="int8" if s.device == "cpu" else "float16",
                                     cpu_threads=s.cpu_threads, num_workers=1)

    def transcribe(self, audio: np.ndarray) -> list[RecognizedWord]:
        s = self.settings
        seconds = max(s.window_s, len(audio) / WHISPER_RATE + 1.0)  # at least 1 s of padding after speech
        self.model.window_frames = min(3000, 100 * int(np.ceil(seconds)))  # 100 mel frames per second
        # One temperature: the fallback re-decodes at higher temperatures, which costs passes and
        # produces exactly the guesses we don't want. No previous-text conditioning: each pass
        # decodes the utterance from its start.
        segments, _ = self.model.transcribe(audio, language="en", beam_size=1, temperature=[0.0],
                                            word_timestamps=True, condition_on_previous_text=False,
                                            vad_filter=False, no_speech_threshold=None,
                                            log_prob_threshold=None, compression_ratio_threshold=None)
        words: list[RecognizedWord] = []
        segments = list(segments)  # decoding happens here
        if segments and not self._english():
            return []
        for segment in segments:
            if segment.compression_ratio > s.compression_max or segment.avg_logprob < s.logprob_min:
                continue
            if segment.no_speech_prob > s.no_speech_max and segment.avg_logprob < s.confident_logprob:
                continue
            for piece in segment.words or []:
                text = piece.word.strip()
                if not text:
                    continue
                start, end = max(0.0, float(piece.start) + self.offset_s), max(0.0, float(piece.end) + self.offset_s)
                if words and not piece.word.startswith(" "):  # a word Whisper split in tokens ("Greg" "son")
                    words[-1] = RecognizedWord(words[-1].text + text, words[-1].start_s, end)
                else:
                    words.append(RecognizedWord(text, start, end))
        return words


    def _english(self) -> bool:
        """Was the audio English? A multilingual Whisper told "language=en" translates German into
        fluent English (base: log-prob -0.86, above the threshold), so ask it which language it
        heard, from the same encoder output (one decoder step). English-only models can't say, and
        need not: what they make of another language is low-confidence and dropped."""
        if not self.model.model.is_multilingual:
            return True
        language, probability = self.model.model.detect_language(self.model.last_encoding)[0][0]
        return language == "<|en|>" or probability < self.settings.language_min

class SpeechDetector:
    """Silero VAD v6 (faster-whisper's ONNX file), streaming: 16 kHz in, one probability per 32 ms."""

    def __init__(self):
        import faster_whisper
        import onnxruntime

        path = os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(path, sess_options=options,
                                                    providers=["CPUExecutionProvider"])
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(VAD_CONTEXT, np.float32)
        self.pending = np.zeros(0, np.float32)

    def push(self, audio: np.ndarray) -> list[float]:
        """Speech probabilities of the whole 32 ms windows completed by `audio` (in order)."""
        self.pending = np.concatenate([self.pending, audio])
        probs = []
        while len(self.pending) >= VAD_CHUNK:
            window, self.pending = self.pending[:VAD_CHUNK], self.pending[VAD_CHUNK:]
            x = np.concatenate([self.context, window])[None]  # (1, 576)
            prob, self.h, self.c = self.session.run(None, {"input": x, "h": self.h, "c": self.c})
            self.context = window[-VAD_CONTEXT:]
            probs.append(float(np.asarray(prob).reshape(-1)[0]))
        return probs


def comparable(word: str) -> str:
    """A word as passes are compared: lowercase, no punctuation ("Sharply," == "sharply")."""
    return re.sub(r"[^\w']", "", word.lower())


@dataclass
class _Utterance:
    index: int
    start: int  # 16 kHz sample where its audio starts (pre-roll included)
    voiced: int = 0  # samples the VAD called speech
    silence: int = 0  # samples of silence since the last speech
    last_pass: int = 0  # sample up to which the last pass decoded
    committed: list[HeardWord] = field(default_factory=list)
    pending: list[RecognizedWord] = field(default_factory=list)  # last pass's uncommitted words (absolute times)


class Hearing:
    """Streams the user's frames to a recognizer in its own thread; words come back through poll().

    `recognizer_factory` builds the recognizer inside the thread (default: Whisper with the
    settings); tests inject one that raises or one that is slow.
    """

    def __init__(self, settings: HearingSettings | None = None, sample_rate: int = 24_000,
                 frame_size: int = 1920,
                 recognizer_factory: Callable[[HearingSettings], Recognizer] | None = None):
        self.settings = settings or HearingSettings()
        self.sample_rate = sample_rate
        self.frame_size = frame_size
        self._factory = recognizer_factory or WhisperRecognizer
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self._frames_fed = 0  # in this call (the frame index of the next frame)
        self._generation = 0  # bumped by reset(): frames and words of an older call are dropped
        self._queued = 0  # frames ever put in the inbox...
        self._handled = 0  # ...and ever taken out and scored (both only grow)
        self._state = threading.Condition()  # guards the two counts and wakes wait_idle
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0  # how often the recognizer failed and the hearing started over
        self.pass_seconds: list[float] = []  # wall time of every pass (the benchmark reads it)
        self._recognizer: Recognizer | None = None
        self._reset_stream()

    # -- the step's side: never blocks ---------------------------------------------------------------
    def start(self) -> Hearing:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="michi-hearing", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def feed(self, frame: np.ndarray) -> None:
        """The user's next frame (frame_size samples at sample_rate)."""
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        assert frame.shape[0] == self.frame_size, (
            f"feed() takes one frame of {self.frame_size} samples, got {frame.shape[0]}"
        )
        with self._state:
            if self.settings.max_backlog_s is not None:
                limit = max(1, int(self.settings.max_backlog_s * self.sample_rate / self.frame_size))
                while self._queued - self._handled >= limit and self._thread is not None \
                        and self._thread.is_alive() and not self._stop.is_set():
                    self._state.wait(timeout=0.5)
            self._queued += 1
        self._inbox.put((self._generation, frame.copy()))
        self._frames_fed += 1

    def poll(self) -> list[HeardWord | HeardUtterance]:
        """Words (and finished utterances) found since the last poll, in order."""
        found = []
        while True:
            try:
                generation, item = self._outbox.get_nowait()
            except queue.Empty:
                return found
            if generation == self._generation:
                found.append(item)

    def reset(self) -> None:
        """A new call: frames fed so far and words not yet polled are forgotten."""
        self._generation += 1
        self._frames_fed = 0

    @property
    def busy(self) -> bool:
        """Audio is waiting, an utterance is open, or a pass is running: more words may come."""
        return not self._is_idle()

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything fed has been heard (tests, the end of `michi chat`)."""
        with self._state:
            return self._state.wait_for(self._is_idle, timeout)

    def _is_idle(self) -> bool:
        return self._handled == self._queued and self._utterance is None

    # -- the thread ---------------------------------------------------------------------------------------
    def _reset_stream(self) -> None:
        self._resampler = soxr.ResampleStream(self.sample_rate, WHISPER_RATE, 1, dtype="float32")
        self._vad: SpeechDetector | None = getattr(self, "_vad", None)
        if self._vad is not None:
            self._vad.reset()
        self._audio = np.zeros(0, np.float32)  # 16 kHz audio from sample self._audio_start on
        self._audio_start = 0
        self._samples = 0  # 16 kHz samples scored by the VAD so far
        self._speaking = False
        self._utterance: _Utterance | None = None
        self._utterances = 0
        self._stream_generation = self._generation

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve()
            except Exception:  # the recognizer's failure must never end the call
                self.restarts += 1
                log.exception("hearing failed: starting over in %.1f s (restart %d)",
                              self.settings.restart_after_s, self.restarts)
                self._recognizer = None
                self._utterance = None
                self._handled_frames(self._drain_inbox())
                self._reset_stream()
                self._stop.wait(self.settings.restart_after_s)

    def _serve(self) -> None:
        if self._vad is None:
            self._vad = SpeechDetector()
        if self._recognizer is None:
            self._recognizer = self._factory(self.settings)
        while not self._stop.is_set():
            try:
                items = [self._inbox.get(timeout=0.05)]
            except queue.Empty:
                continue
            items += self._drain_inbox()
            try:
                if any(generation != self._stream_generation for generation, _ in items):
                    self._reset_stream()  # a new call: start clean
                for generation, frame in items:
                    if generation == self._stream_generation:
                        self._listen(frame)
                self._decide()
            finally:
                self._handled_frames(items)

    def _drain_inbox(self) -> list[tuple[int, np.ndarray]]:
        items = []
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                return items

    def _handled_frames(self, items: list) -> None:
        with self._state:
            self._handled += len(items)
            self._state.notify_all()

    def _listen(self, frame: np.ndarray) -> None:
        """Resample, keep the audio an utterance may need, and follow the VAD window by window."""
        s = self.settings
        audio = self._resampler.resample_chunk(frame)
        self._audio = np.concatenate([self._audio, audio])
        for prob in self._vad.push(audio):
            self._samples += VAD_CHUNK
            u = self._utterance
            if u is None:
                if prob >= s.speech_threshold:
                    start = max(self._audio_start, self._samples - VAD_CHUNK - int(s.pre_roll_s * WHISPER_RATE))
                    self._utterance = _Utterance(self._utterances, start, voiced=VAD_CHUNK, last_pass=start)
                    self._utterances += 1
                continue
            if prob >= s.silence_threshold:
                u.voiced += VAD_CHUNK
                u.silence = 0
            else:
                u.silence += VAD_CHUNK
            if (u.silence >= s.end_silence_s * WHISPER_RATE
                    or self._samples - u.start >= s.max_utterance_s * WHISPER_RATE):
                self._close(u)
        if self._utterance is None:  # keep only the pre-roll while nobody speaks
            self._drop_audio_before(self._samples - int(s.pre_roll_s * WHISPER_RATE) - VAD_CHUNK)

    def _close(self, u: _Utterance) -> None:
        """The utterance ended: a final pass commits the rest, then its whole text is reported."""
        if u.voiced >= self.settings.min_speech_s * WHISPER_RATE:
            self._commit(u, self._decode(u), final=True)
            if u.committed:
                self._emit(HeardUtterance(" ".join(w.text for w in u.committed), u.start / WHISPER_RATE,
                                          self._samples / WHISPER_RATE, self._known_frame(), u.index))
        self._utterance = None

    def _decide(self) -> None:
        """After the waiting audio was scored: a partial pass on the open utterance, when due."""
        s, u = self.settings, self._utterance
        if u is None:
            return
        rate = WHISPER_RATE
        if (u.voiced >= s.min_speech_s * rate and self._samples - u.start >= s.first_pass_s * rate
                and self._samples - u.last_pass >= s.pass_every_s * rate):
            self._commit(u, self._decode(u), final=False)

    def _decode(self, u: _Utterance) -> list[RecognizedWord]:
        audio = self._audio[u.start - self._audio_start: self._samples - self._audio_start]
        started = time.perf_counter()
        words = self._recognizer.transcribe(audio)
        self.pass_seconds.append(time.perf_counter() - started)
        u.last_pass = self._samples
        offset = u.start / WHISPER_RATE
        return [RecognizedWord(w.text, w.start_s + offset, w.end_s + offset) for w in words]

    def _commit(self, u: _Utterance, words: list[RecognizedWord], final: bool) -> None:
        """LocalAgreement-2: commit what this pass and the last agree on (everything when final)."""
        fresh = self._after_committed(u, words)
        if final:
            agreed = len(fresh)
        else:
            edge = u.last_pass / WHISPER_RATE - self.settings.edge_s  # where this pass's audio ends, less a margin
            agreed = 0
            while (agreed < min(len(fresh), len(u.pending)) and fresh[agreed].end_s <= edge
                   and comparable(fresh[agreed].text) == comparable(u.pending[agreed].text)):
                agreed += 1
        known = self._known_frame()
        for word in fresh[:agreed]:
            heard = HeardWord(word.text, word.start_s, word.end_s, known, final, u.index)
            u.committed.append(heard)
            self._emit(heard)
        u.pending = fresh[agreed:]

    @staticmethod
    def _after_committed(u: _Utterance, words: list[RecognizedWord]) -> list[RecognizedWord]:
        """The part of a pass's words that follows what is already committed.

        Every pass decodes the utterance from its start, so normally it repeats the committed words
        first; when Whisper rewrote one of them, fall back on time (words starting before the last
        committed word ended are old) and drop a repeated tail of up to 5 committed words.
        """
        done = [comparable(w.text) for w in u.committed]
        if [comparable(w.text) for w in words[:len(done)]] == done:
            return words[len(done):]
        last_end = u.committed[-1].end_s
        fresh = [w for w in words if w.start_s >= last_end - 0.1]
        for n in range(min(5, len(done), len(fresh)), 0, -1):
            if [comparable(w.text) for w in fresh[:n]] == done[-n:]:
                return fresh[n:]
        return fresh

    def _drop_audio_before(self, sample: int) -> None:
        if sample > self._audio_start:
            self._audio = self._audio[sample - self._audio_start:]
            self._audio_start = sample

    def _known_frame(self) -> int:
        return self._frames_fed - 1

    def _emit(self, item: HeardWord | HeardUtterance) -> None:
        self._outbox.put((self._stream_generation, item))
