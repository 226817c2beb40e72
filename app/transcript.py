"""The live transcript: both sides of the call, the assistant's words shown as they are *heard*.

The model writes a word into its text stream in the same step that produces the audio frame
where the word starts, but that frame reaches the speaker only after the playback buffer ahead of
it has drained. So every assistant piece carries the sample position on the played-samples clock
at which its frame starts playing (`play_at`), and is revealed once the clock passes it. When the
user interrupts, pieces not yet heard are dropped: the transcript then says what the user
actually heard, and that is what gets saved.

Written by the inference thread, read by the GUI thread: every method takes the lock, briefly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from michi_core.stores.conversations import ASSISTANT, USER, SourceRef, Turn


@dataclass
class _Piece:
    text: str
    frame_index: int
    play_at: int  # played-samples clock position where the piece's frame starts; 0 for the user


@dataclass
class _Segment:
    speaker: str
    pieces: list[_Piece] = field(default_factory=list)
    interrupted: bool = False
    typed: bool = False
    sources: list[SourceRef] = field(default_factory=list)


class Transcript:
    def __init__(self, frame_seconds: float):
        self.frame_seconds = frame_seconds
        self._segments: list[_Segment] = []
        self._lock = threading.Lock()
        self.version = 0  # bumped on every change, so the view redraws only when something moved

    def user_started_speaking(self) -> None:
        """VAD heard the user start: whatever the assistant says next belongs to a new turn."""
        with self._lock:
            self._segment_for(USER)

    def add_user_text(self, frame_index: int, text: str, spoken_frame: int | None = None) -> None:
        """The user's words that reached the session at `frame_index`, spoken at `spoken_frame`.

        The recognizer hears a word a second or so after it was said, when the assistant may have
        begun answering: the word still goes into the user's turn it was spoken in."""
        if text:
            spoken = frame_index if spoken_frame is None else spoken_frame
            with self._lock:
                self._user_segment_at(spoken).pieces.append(_Piece(text, spoken, 0))
                self.version += 1

    def add_typed_message(self, frame_index: int, text: str) -> None:
        """The user typed `text` into the call: a turn of its own, marked as typed."""
        if text.strip():
            with self._lock:
                self._segments.append(_Segment(USER, [_Piece(text.strip(), frame_index, 0)], typed=True))
                self.version += 1

    def user_text_since(self, frame_index: int) -> str:
        """What the user said from `frame_index` on (one utterance's words)."""
        with self._lock:
            return "".join(p.text for s in self._segments if s.speaker == USER and not s.typed
                           for p in s.pieces if p.frame_index >= frame_index).strip()

    def attach_sources(self, sources: list[SourceRef]) -> None:
        """Passages injected for the user's latest turn (shown under it, saved with it)."""
        if not sources:
            return
        with self._lock:
            for segment in reversed(self._segments):
                if segment.speaker == USER:
                    segment.sources.extend(sources)
                    self.version += 1
                    return

    def add_assistant_text(self, frame_index: int, text: str, play_at: int) -> None:
        if text:
            with self._lock:
                self._segment_for(ASSISTANT).pieces.append(_Piece(text, frame_index, play_at))
                self.version += 1

    def cut_unheard(self, played_samples: int) -> str:
        """The user interrupted: forget what the assistant said but was not heard, and mark its
        last turn as cut off. Returns the forgotten text."""
        with self._lock:
            dropped = []
            for segment in self._segments:
                if segment.speaker == ASSISTANT:
                    dropped += [p.text for p in segment.pieces if p.play_at > played_samples]
                    segment.pieces = [p for p in segment.pieces if p.play_at <= played_samples]
            self._segments = [s for s in self._segments if s.pieces]
            spoken = [s for s in self._segments if s.speaker == ASSISTANT]
            if spoken:
                spoken[-1].interrupted = True
            self.version += 1
            return "".join(dropped)

    def turns(self, played_samples: int | None = None) -> list[Turn]:
        """The turns as heard by `played_samples` (None: everything said so far, heard or not)."""
        with self._lock:
            turns = []
            for segment in self._segments:
                pieces = [p for p in segment.pieces
                          if played_samples is None or segment.speaker == USER or p.play_at <= played_samples]
                text = "".join(p.text for p in pieces).strip()
                if not text:
                    continue
                turns.append(Turn(
                    speaker=segment.speaker, text=text,
                    start_s=pieces[0].frame_index * self.frame_seconds,
                    end_s=(pieces[-1].frame_index + 1) * self.frame_seconds,
                    interrupted=segment.interrupted, typed=segment.typed, sources=tuple(segment.sources),
                ))
            return turns

    def pending_assistant_pieces(self, played_samples: int) -> int:
        """How many assistant pieces are said but not yet heard (waiting in the playback buffer)."""
        with self._lock:
            return sum(1 for s in self._segments if s.speaker == ASSISTANT
                       for p in s.pieces if p.play_at > played_samples)

    def _user_segment_at(self, frame: int) -> _Segment:
        """The user's turn that was open at `frame`: the last one if only assistant turns that
        began after `frame` follow it, else the open user turn (a new one if needed)."""
        for index in range(len(self._segments) - 1, -1, -1):
            segment = self._segments[index]
            if segment.speaker == USER and not segment.typed:
                later = self._segments[index + 1:]
                if later and all(s.speaker == ASSISTANT and s.pieces and s.pieces[0].frame_index > frame
                                 for s in later):
                    return segment
                break
        return self._segment_for(USER)

    def _segment_for(self, speaker: str) -> _Segment:
        """The open turn of `speaker`: the last one if it is theirs and was not cut off, else a new one."""
        last = self._segments[-1] if self._segments else None
        if last is not None and last.speaker == speaker and not last.interrupted and not last.typed:
            return last
        if last is not None and not last.pieces:
            self._segments.pop()  # a turn that never got a word (VAD heard a cough) leaves no trace
            return self._segment_for(speaker)
        self._segments.append(_Segment(speaker))
        return self._segments[-1]
