"""The inference worker: the live call, one 80 ms frame at a time, off the GUI thread.

Two layers, so the per-frame logic can be tested without an event loop:

- `ConversationLoop` (plain Python) does one frame per `step_once()`: take 1920 mic samples,
  cancel the echo of what was played, run the VAD, step the model, queue its frame for
  playback, and note the text with the played-samples position where its frame will be heard.
  It handles interruption (the user starts talking while Michi's audio is still queued: the
  queue is flushed and the transcript cut back to what was heard), and falls behind gracefully
  (when the model is slower than real time, old mic frames are skipped, counted and reported,
  instead of letting the delay grow without bound).
- `InferenceWorker` (a QObject moved to a QThread) owns a call: builds the session, opens the
  audio stream, spins the loop until `stop()`, restarts the stream when the device fails (and
  gives up cleanly when it keeps failing), saves the conversation, and reports through its
  signals. The GUI never waits on it: it polls
  `snapshot()` with a ~30 Hz timer, so updates are coalesced instead of one signal per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal

from app.audio_port import AudioPort, EchoCanceller, SpeechEvents, VoiceActivityDetector
from app.call_devices import CallDevices
from app.latency import LatencyMonitor, LatencySnapshot, VoicedFrame, percentile
from app.transcript import Transcript
from michi_core.audio import float_to_int16, int16_to_float
from michi_core.model.model import MichiModel
from michi_core.session.engine import DuplexSession, SamplingSettings
from michi_core.session.hearing import Hearing, HearingSettings
from michi_core.stores.conversations import ConversationStore, Turn
from michi_core.stores.rag.injector import ContextInjector

log = logging.getLogger(__name__)

PLAYBACK_CUSHION_MS = 40  # silence queued before the first model frame: absorbs step-time jitter
MAX_BACKLOG_FRAMES = 4  # mic audio waiting beyond this (320 ms) is skipped: late is worse than missing
SPEECH_RMS = 0.01  # model output above this (-40 dBFS) counts as speaking
STALL_SECONDS = 2.0  # no mic audio for this long while running means the device is gone
MAX_RESTARTS = 3  # per call: a device that keeps failing is given up on
RECENT_FRAMES = 16  # longer than any VAD hangover: a reply may start before the VAD reports the end
WARNING_HOLD_S = 5.0  # a "falling behind" warning stays up this long after the last skip
MAX_RECORDING_S = 30 * 60  # audio kept for saving (~170 MB in memory); the transcript goes on after it
STATS_REFRESH_S = 0.5  # AudioIO.stats() computes percentiles: too costly for every 30 Hz poll


class AudioDeviceFailure(RuntimeError):
    """The audio device reported an error or stopped delivering audio."""


@dataclass
class LiveUpdate:
    """Everything the GUI shows about the call, as of one poll."""

    turns: list[Turn]
    mic_level: float  # RMS, linear
    output_level: float
    user_speaking: bool
    assistant_speaking: bool
    latency: LatencySnapshot
    warning: str | None = None  # the model falls behind real time, a device was restarted


@dataclass
class CallSummary:
    conversation_id: int | None  # None when nothing was saved
    frames: int
    dropped_frames: int
    underruns: int
    step_p50_ms: float | None
    step_p95_ms: float | None
    ttfa_ms: float | None
    response_ms: float | None
    error: str | None = None  # why the call ended early, if it did
    final: LiveUpdate | None = None  # the call's last state, for the GUI's last look
    save_error: str | None = None  # why the call could not be saved (a full, read-only or damaged database)


@dataclass
class CallSetup:
    """What a call needs; built by the GUI thread, used only by the worker's thread."""

    model: MichiModel
    model_name: str
    open_devices: Callable[[], CallDevices]  # called in the worker thread (the AEC loads a native library)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    system_prompt: str = ""
    compute_device: str = "cpu"
    store_path: Path | None = None  # None: Michi's database
    save: bool = True
    voice_id: int | None = None  # a stored voice to speak with (None: the model's own voice)
    hearing: HearingSettings | None = None  # the recognizer of the user's words (None: the listen head's text)
    # Builds the call's document retrieval in the worker thread (SQLite connections belong to the
    # thread that opens them); None or returning None: the call consults no documents.
    open_context: Callable[[MichiModel], ContextInjector | None] | None = None


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


class ConversationLoop:
    """One call's per-frame logic; `step_once` runs in the worker thread, `snapshot` in the GUI's."""

    def __init__(self, session: DuplexSession, audio: AudioPort, vad: VoiceActivityDetector,
                 echo_canceller: EchoCanceller, injector: ContextInjector | None = None):
        self.session = session
        self.injector = injector  # RAG: passages for each finished utterance or typed message
        self.injections = 0  # how many times passages went into the context
        self.audio = audio
        self.vad = vad
        self.echo_canceller = echo_canceller
        self.sample_rate = session.config.codec.sample_rate
        self.frame_size = session.frame_size
        self.transcript = Transcript(frame_seconds=self.frame_size / self.sample_rate)
        self.latency = LatencyMonitor(budget_ms=session.config.codec.frame_ms, sample_rate=self.sample_rate,
                                      backbone=session.runner.name)
        self.muted = False  # set from the GUI thread; read once per frame
        self.device_error: str | None = None  # set by the audio layer's error hook (any thread)
        self.interruptions = 0
        self.user_speaking = False
        self._speech_heard_until = 0  # played-clock position where the last model speech ends
        self._frames_fed = 0  # frames given to the VAD and the model: the VAD's timeline / frame_size
        self._recent_voiced: deque[VoicedFrame] = deque(maxlen=RECENT_FRAMES)
        # (frame, when its end reached the mic), to date the VAD's positions in wall-clock time
        self._capture_times: deque[tuple[int, float]] = deque(maxlen=RECENT_FRAMES)
        self._user_frames: list[np.ndarray] = []  # int16, what the model heard, frame by frame
        self._assistant_frames: list[np.ndarray] = []  # int16, what it said
        self._last_audio_at = time.monotonic()
        self._last_skip_at: float | None = None
        self._warning: str | None = None
        self._cushion_written = False
        self._queue_end = 0  # played-clock position where the queued model audio ends
        self._max_recorded_frames = int(MAX_RECORDING_S * self.sample_rate / self.frame_size)
        self._recording_full = False
        self._stats = audio.stats()
        self._stats_at = time.monotonic()
        self._utterance_start_frame = 0  # where the user's current utterance began (listen-head text)
        # Work the GUI thread hands over, run in this thread between two frames (the session and
        # the SQLite connections live here): typed messages, a voice change. deque ops are atomic.
        self._between_frames: deque[Callable[[], None]] = deque()

    # -- called from the GUI thread ----------------------------------------------------------------
    def send_text(self, text: str) -> None:
        """A typed message into the live call: it goes into the model's context before the next
        frame, with the passages the user's documents have for it (mixed text/audio prompting)."""
        text = text.strip()
        if text:
            self._between_frames.append(lambda: self._receive_typed(text))

    def run_between_frames(self, task: Callable[[], None]) -> None:
        self._between_frames.append(task)

    # -- the frame -------------------------------------------------------------------------------
    def step_once(self) -> bool:
        """Process one frame if a whole one has been captured. False when there was none yet."""
        if self.device_error is not None:
            message, self.device_error = self.device_error, None
            raise AudioDeviceFailure(message)
        now = time.monotonic()
        self.latency.update_played(self.audio.played_samples, now)
        self._skip_backlog()
        mic = self.audio.read_mic_frame(self.frame_size)
        if mic is None:
            if now - self._last_audio_at > STALL_SECONDS:
                raise AudioDeviceFailure(f"no audio from the microphone for {STALL_SECONDS:.0f} s")
            return False
        self._last_audio_at = now
        while self._between_frames:
            self._between_frames.popleft()()
        # The end of this frame reached the mic before everything still waiting behind it.
        captured_at = now - self.audio.mic_backlog_samples / self.sample_rate
        heard = self.echo_canceller.process(mic, self.audio.played_reference(self.frame_size))
        if self.muted:  # after the canceller, which keeps learning the echo path from the real mic
            heard = np.zeros_like(heard)
        self._capture_times.append((self._frames_fed, captured_at))
        self._handle_speech_events(self.vad.process(heard))
        self._frames_fed += 1

        step_started = time.perf_counter()
        result = self.session.step(heard)
        step_ms = 1000 * (time.perf_counter() - step_started)  # wall time: what real time is up against
        if not self._cushion_written:
            # Without a little audio queued ahead, every step that runs late is heard as a click.
            self._queue_playback(np.zeros(self.sample_rate * PLAYBACK_CUSHION_MS // 1000, np.float32))
            self._cushion_written = True
        play_at = self._queue_playback(result.audio)
        produced_at = time.monotonic()

        if result.user_words:  # the recognizer's words, each in the turn it was spoken in
            for word in result.user_words:
                spoken = int(word.start_s * self.sample_rate / self.frame_size)
                self.transcript.add_user_text(result.frame_index, " " + word.text, spoken_frame=spoken)
        else:
            self.transcript.add_user_text(result.frame_index, result.user_text)
        if result.user_utterance:
            # The recognizer finished an utterance: give the model what the documents say about it.
            self._inject(result.user_utterance)
        self.transcript.add_assistant_text(result.frame_index, result.model_text, play_at)
        self.latency.record_step(step_ms)
        if rms(result.audio) > SPEECH_RMS:
            voiced = VoicedFrame(self._frames_fed - 1, produced_at, play_at)
            self._recent_voiced.append(voiced)
            self.latency.model_voiced(voiced)
            self._speech_heard_until = play_at + len(result.audio)
        if len(self._user_frames) < self._max_recorded_frames:
            self._user_frames.append(float_to_int16(heard))
            self._assistant_frames.append(float_to_int16(result.audio))
        elif not self._recording_full:
            self._recording_full = True
            log.warning("the call is longer than %d min: the rest is not recorded", MAX_RECORDING_S // 60)
        return True

    def _queue_playback(self, samples: np.ndarray) -> int:
        """Queue audio for the speaker; returns the played-clock position where it starts.

        The loop keeps its own account of where the queue ends rather than asking the ring how
        full it is: right after an interruption the ring still holds the flushed audio until the
        next callback, and counting it would show the next words too late.
        """
        play_at = max(self.audio.played_samples, self._queue_end)  # an underrun leaves the clock caught up
        self.audio.write_playback(samples)
        self._queue_end = play_at + len(samples)
        return play_at

    def _receive_typed(self, text: str) -> None:
        self.transcript.add_typed_message(self._frames_fed, text)
        self._inject(text)
        self.session.prefill_text(text)

    def _inject(self, query: str) -> None:
        """Put the passages the user's documents have for `query` into the model's context."""
        if self.injector is None or not query:
            return
        try:
            injection = self.injector.inject(query)
        except Exception as failure:  # noqa: BLE001 — a broken index must not end the call
            log.exception("document retrieval failed")
            self.set_warning(f"Searching your documents failed ({failure}); answering without them.")
            return
        if not injection.text:
            return
        self.session.prefill_text(injection.text)
        self.injections += 1
        self.transcript.attach_sources([passage.source_ref() for passage in injection.passages])
        log.info("injected %d passage(s) for %r", len(injection.passages), query[:60])

    def _handle_speech_events(self, events: SpeechEvents) -> None:
        if events.started:
            self._utterance_start_frame = self._frames_fed
            self.user_speaking = True
            if self.assistant_speaking():
                self.interrupt()
            self.transcript.user_started_speaking()
            self.latency.speech_started()
        if events.ended:
            self.user_speaking = False
            fed = (self._frames_fed + 1) * self.frame_size  # the VAD's position at the end of this frame
            ended = self.vad.speech_ended_at if self.vad.speech_ended_at is not None else fed
            self.latency.speech_ended(self._wall_time_of(ended), after_frame=ended // self.frame_size,
                                      recent=list(self._recent_voiced))
            # The utterance is over: before the model answers, give it what the documents say. With a
            # recognizer this waits for its last pass instead (result.user_utterance in step_once).
            if self.session.hearing is None:
                self._inject(self.transcript.user_text_since(self._utterance_start_frame))

    def _wall_time_of(self, position: int) -> float:
        """When the sample at `position` (the VAD's timeline) reached the mic: dated from the
        capture time of its own frame, since device blocks do not arrive evenly spaced."""
        frame = position // self.frame_size
        later = ((i, t) for i, t in self._capture_times if i >= frame)
        index, captured_at = next(later, self._capture_times[-1])
        return captured_at - ((index + 1) * self.frame_size - position) / self.sample_rate

    def assistant_speaking(self) -> bool:
        """Is model speech still queued or playing? (What an interruption would cut.)"""
        played = self.audio.played_samples
        return self._speech_heard_until > played or self.transcript.pending_assistant_pieces(played) > 0

    def interrupt(self) -> None:
        """The user talks over Michi: drop its queued audio and every word that was not heard."""
        self.audio.clear_playback()
        played = self.audio.played_samples
        cut = self.transcript.cut_unheard(played)
        self._speech_heard_until = self._queue_end = played
        self._cushion_written = False  # the flush took the cushion too
        self.interruptions += 1
        log.info("interrupted by the user at %.2f s played; cut %r", played / self.sample_rate, cut)

    def _skip_backlog(self) -> None:
        """When compute falls behind, skip the oldest mic audio: a late answer helps nobody."""
        backlog_frames = self.audio.mic_backlog_samples // self.frame_size
        if backlog_frames <= MAX_BACKLOG_FRAMES:
            return
        skipped = 0
        while self.audio.mic_backlog_samples // self.frame_size > 1:
            if self.audio.read_mic_frame(self.frame_size) is None:
                break
            skipped += 1
        if skipped:
            self.latency.record_dropped(skipped)
            self._last_skip_at = time.monotonic()
            log.warning("model slower than real time: skipped %d mic frames", skipped)

    # -- what the GUI and the saver read ---------------------------------------------------------
    def warning(self) -> str | None:
        """What the user should know now: falling behind real time wins over older notices."""
        latency = self.latency.snapshot(lag_s=0, buffer_ms=0, underruns=0, xruns=0, device="")
        skipped_s = latency.dropped_frames * latency.budget_ms / 1000
        if latency.frames >= 8 and latency.step_p95_ms > latency.budget_ms:  # 8: past the first slow steps
            return (f"Michi is slower than real time on this computer (step p95 "
                    f"{latency.step_p95_ms:.0f} ms, budget {latency.budget_ms:.0f} ms): {skipped_s:.1f} s "
                    "of your audio skipped to keep up. A GPU or a smaller model helps.")
        if self._last_skip_at is not None and time.monotonic() - self._last_skip_at < WARNING_HOLD_S:
            return f"The computer was busy: {skipped_s:.1f} s of your audio skipped to keep up."
        return self._warning

    def set_warning(self, message: str | None) -> None:
        self._warning = message

    def snapshot(self) -> LiveUpdate:
        """Called from the GUI thread: every piece it reads is either locked or a plain number."""
        audio = self.audio
        now = time.monotonic()
        if now - self._stats_at > STATS_REFRESH_S:
            self._stats, self._stats_at = audio.stats(), now
        stats = self._stats
        played = audio.played_samples
        latency = self.latency.snapshot(
            lag_s=(audio.captured_samples - played) / self.sample_rate,
            buffer_ms=1000 * audio.playback_queued_samples / self.sample_rate,
            underruns=stats.underruns, xruns=stats.xruns, device=audio.device_name,
        )
        return LiveUpdate(
            turns=self.transcript.turns(played), mic_level=0.0 if self.muted else audio.mic_level,
            output_level=audio.output_level, user_speaking=self.user_speaking,
            assistant_speaking=self.assistant_speaking(), latency=latency, warning=self.warning(),
        )

    def heard_turns(self) -> list[Turn]:
        """The transcript as the user heard it (what is saved)."""
        return self.transcript.turns(self.audio.played_samples)

    def device_restarted(self) -> None:
        """The stream was reopened: its clocks go on, but the stall timer starts over."""
        self._last_audio_at = time.monotonic()

    def recording(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, assistant) float32 audio, aligned frame by frame: the call as the model lived it."""
        if not self._user_frames:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        user = int16_to_float(np.concatenate(self._user_frames))
        assistant = int16_to_float(np.concatenate(self._assistant_frames))
        return user, assistant


class InferenceWorker(QObject):
    call_started = Signal(str)  # the audio device's description
    call_ended = Signal(object)  # CallSummary
    error = Signal(str)  # a message for the user (device failure, model failure)
    warning = Signal(str)  # the stream was restarted after a device error, no echo cancellation...
    finished = Signal()

    def __init__(self, setup: CallSetup):
        super().__init__()
        self.setup = setup
        self.loop: ConversationLoop | None = None
        self.audio: AudioPort | None = None
        self._stop_requested = threading.Event()
        self._muted = False
        self._injector: ContextInjector | None = None
        self._save_error: str | None = None

    # -- called from the GUI thread -----------------------------------------------------------------
    def stop(self) -> None:
        """Ask the call to end; returns at once (the worker saves and finishes on its own)."""
        self._stop_requested.set()

    def set_muted(self, muted: bool) -> None:
        self._muted = muted
        if self.loop is not None:
            self.loop.muted = muted

    def snapshot(self) -> LiveUpdate | None:
        loop = self.loop
        return loop.snapshot() if loop is not None else None

    def send_text(self, text: str) -> bool:
        """Type a message into the live call; False when no call is running."""
        loop = self.loop
        if loop is None:
            return False
        loop.send_text(text)
        return True

    def set_voice(self, voice_id: int) -> bool:
        """Switch the live call to a stored voice (from the next frame); False when no call runs."""
        loop = self.loop
        if loop is None:
            return False
        loop.run_between_frames(lambda: self._apply_voice(loop.session, voice_id))
        return True

    def _apply_voice(self, session: DuplexSession, voice_id: int) -> None:
        """In the worker thread: encode (or reuse) the voice for this model and prompt the session."""
        from michi_core.stores.voices import VoiceStore

        try:
            with VoiceStore(self.setup.store_path) as store:
                session.set_voice(store.prompt_for(voice_id, self.setup.model))
        except Exception as failure:  # noqa: BLE001 — a deleted or broken voice keeps the current one
            log.exception("the voice could not be applied")
            self.warning.emit(f"The chosen voice could not be used ({failure}); Michi keeps its voice.")

    # -- the worker thread ---------------------------------------------------------------------------
    def start(self) -> None:
        """Runs in the worker thread (connected to QThread.started) until stop()."""
        setup = self.setup
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            devices = setup.open_devices()
            self.audio = devices.audio
            session = DuplexSession(setup.model, setup.sampling, device=setup.compute_device)
            if setup.hearing is not None:  # Whisper loads in the hearing's own thread: no wait here
                session.attach_hearing(Hearing(setup.hearing, sample_rate=setup.model.config.codec.sample_rate,
                                               frame_size=setup.model.config.codec.frame_size))
            if setup.system_prompt:
                session.prefill_text(setup.system_prompt)
            if setup.voice_id is not None:
                self._apply_voice(session, setup.voice_id)
            injector = self._injector = self._open_context()
            loop = ConversationLoop(session, devices.audio, devices.vad, devices.echo_canceller, injector)
            loop.muted = self._muted
            loop.set_warning(devices.notice)
            self.loop = loop  # before start(): the error hook reports through it
            devices.audio.on_error = self._on_device_error
            devices.audio.start()
        except Exception as failure:  # noqa: BLE001 — a refused device or a bad prompt must reach the user
            log.exception("the call could not start")
            self._finish(None, started_at, f"The conversation could not start: {failure}")
            return
        self.call_started.emit(devices.audio.device_name)
        if devices.notice:
            self.warning.emit(devices.notice)
        self._finish(loop, started_at, self._run(loop))

    def _open_context(self) -> ContextInjector | None:
        """The call's document retrieval; a failure costs the documents, not the call."""
        if self.setup.open_context is None:
            return None
        try:
            return self.setup.open_context(self.setup.model)
        except Exception as failure:  # noqa: BLE001
            log.exception("document retrieval could not start")
            self.warning.emit(f"Your documents cannot be consulted in this call ({failure}).")
            return None

    def _run(self, loop: ConversationLoop) -> str | None:
        """Spin the loop until stop(); returns why the call ended early, if it did."""
        restarts = 0
        while not self._stop_requested.is_set():
            try:
                if not loop.step_once():
                    self._stop_requested.wait(0.004)  # a frame is 80 ms: poll well within it
            except AudioDeviceFailure as failure:
                restarts += 1
                if restarts > MAX_RESTARTS or not self._restart_stream(loop, str(failure)):
                    return (f"The audio device stopped working ({failure}). "
                            "The conversation was ended and saved.")
            except Exception as failure:  # noqa: BLE001
                log.exception("the call failed")
                return f"The conversation stopped because of an error: {failure}"
        return None

    def _restart_stream(self, loop: ConversationLoop, reason: str) -> bool:
        log.warning("audio device error (%s): restarting the stream", reason)
        try:
            self.audio.stop()
            self.audio.start()
        except Exception as failure:  # noqa: BLE001
            log.error("the audio stream could not be restarted: %s", failure)
            return False
        loop.device_restarted()
        message = f"The audio device reported a problem ({reason}); the stream was restarted."
        loop.set_warning(message)
        self.warning.emit(message)
        return True

    def _on_device_error(self, message: str) -> None:
        """The audio layer's error hook (called from its thread): the loop raises it next frame."""
        if self.loop is not None:
            self.loop.device_error = str(message)

    def _finish(self, loop: ConversationLoop | None, started_at: str, error: str | None) -> None:
        if self.audio is not None:
            try:
                self.audio.stop()
            except Exception:  # noqa: BLE001 — stopping a broken device may fail too; the call is over anyway
                log.exception("stopping the audio stream failed")
        if self._injector is not None:
            close = getattr(self._injector.retriever.store, "close", None)
            if close is not None:
                close()
            self._injector = None
        if loop is not None:
            loop.session.close()  # the recognizer's thread
        conversation_id = self._save(loop, started_at) if loop is not None and self.setup.save else None
        summary = self._summary(loop, conversation_id, error)
        summary.save_error = self._save_error
        # The summary carries the last state: drop the session (KV cache), the recording and the
        # audio buffers now, rather than whenever the GUI thread gets round to this object.
        self.loop = None
        self.audio = None
        if error:
            self.error.emit(error)
        self.call_ended.emit(summary)
        self.finished.emit()
        QThread.currentThread().quit()

    def _save(self, loop: ConversationLoop, started_at: str) -> int | None:
        """The saved conversation's id; None when there was nothing to save, or when saving failed
        (then `_save_error` says why, and the summary carries it to the window: never silent)."""
        user, assistant = loop.recording()
        if len(user) == 0:
            return None
        try:
            with ConversationStore(self.setup.store_path) as store:
                return store.save(
                    started_at=started_at, ended_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    model=self.setup.model_name, sample_rate=loop.sample_rate, user_audio=user,
                    assistant_audio=assistant, turns=loop.heard_turns(),
                )
        except Exception as failure:  # noqa: BLE001 — a full disk must not lose the call's summary
            log.exception("saving the conversation failed")
            self._save_error = f"The conversation could not be saved: {failure}"
            return None

    @staticmethod
    def _summary(loop: ConversationLoop | None, conversation_id: int | None,
                 error: str | None) -> CallSummary:
        if loop is None:
            return CallSummary(None, 0, 0, 0, None, None, None, None, error)
        steps = loop.latency.all_step_ms()
        final = loop.snapshot()
        latency = final.latency
        return CallSummary(conversation_id=conversation_id, frames=len(steps),
                           dropped_frames=latency.dropped_frames,
                           underruns=latency.underruns, step_p50_ms=percentile(steps, 50),
                           step_p95_ms=percentile(steps, 95), ttfa_ms=latency.ttfa_ms,
                           response_ms=latency.response_ms, error=error, final=final)
