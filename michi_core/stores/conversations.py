"""Saved conversations: both sides' audio and the transcript of what was heard, in SQLite.

They live in Michi's one database (`paths.database_path()`), next to the documents and voices.
A conversation is one row of `conversations` holding the audio of both channels, and its turns
are rows of `conversation_turns`. Audio is stored as 16-bit PCM at the model's rate, aligned
frame by frame: sample k of the user channel is what the model heard while it produced sample k
of its own channel, so an export plays the call back exactly as the model lived it.

No Qt here: the app saves from its inference thread, and a future CLI can list and export.
A store object belongs to the thread that opened it (sqlite3's rule).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from michi_core.audio import float_to_int16, int16_to_float, save_audio
from michi_core.stores.database import SqliteStore

USER, ASSISTANT = "user", "assistant"  # the speakers of a turn
SPEAKER_LABELS = {USER: "You", ASSISTANT: "Michi"}


@dataclass(frozen=True)
class SourceRef:
    """A document passage put into the model's context for a turn (RAG), enough to open it again."""

    title: str
    path: str
    text: str  # the passage as injected
    page: int | None = None  # 1-based, PDFs only
    char_start: int = 0  # offsets into the document's extracted text
    char_end: int = 0

    @property
    def label(self) -> str:
        """How a passage is cited everywhere: in the model's context ("[label] text"), the
        transcript view and the exported transcript."""
        return f"{self.title}, p. {self.page}" if self.page else self.title


@dataclass
class Turn:
    speaker: str  # USER or ASSISTANT
    text: str
    start_s: float  # seconds from the start of the conversation (model time: frame index × 80 ms)
    end_s: float
    interrupted: bool = False  # the assistant was cut off by the user: `text` is what was heard
    typed: bool = False  # the user typed this turn into the call instead of saying it
    sources: tuple[SourceRef, ...] = ()  # passages retrieved for this (user) turn and injected


@dataclass
class ConversationSummary:
    id: int
    started_at: str  # ISO 8601, UTC
    title: str
    model: str
    duration_s: float
    turn_count: int


@dataclass
class Conversation:
    id: int
    started_at: str
    ended_at: str
    title: str
    model: str
    sample_rate: int
    user_audio: np.ndarray  # (t,) float32
    assistant_audio: np.ndarray  # (t,) float32, same length as user_audio
    turns: list[Turn] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.user_audio) / self.sample_rate


def _to_pcm16(wave: np.ndarray) -> bytes:
    return float_to_int16(wave).astype("<i2").tobytes()  # little-endian on disk, whatever the machine


def _from_pcm16(blob: bytes) -> np.ndarray:
    return int16_to_float(np.frombuffer(blob, dtype="<i2"))


def _title_of(turns: list[Turn]) -> str:
    """The user's first words name the conversation, the way a chat app lists them."""
    for turn in turns:
        if turn.speaker == USER and turn.text.strip():
            words = turn.text.split()
            return " ".join(words[:8]) + ("…" if len(words) > 8 else "")
    return "Conversation"


def format_transcript(turns: list[Turn]) -> str:
    """One line per turn, `[mm:ss.s] Speaker: text`, the way the export's .txt reads."""
    lines = []
    for turn in turns:
        minutes, seconds = divmod(turn.start_s, 60)
        cut = " [interrupted]" if turn.interrupted else ""
        typed = " (typed)" if turn.typed else ""
        speaker = SPEAKER_LABELS[turn.speaker]
        lines.append(f"[{int(minutes):02d}:{seconds:04.1f}] {speaker}{typed}: {turn.text.strip()}{cut}")
        lines += [f"    source: {source.label} ({source.path})" for source in turn.sources]
    return "\n".join(lines) + "\n"


class ConversationStore(SqliteStore):
    def _create_schema(self) -> None:
        with self.write():
            self.db.execute("""
                CREATE TABLE IF NOT EXISTS conversations (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    started_at TEXT NOT NULL,
                    ended_at TEXT NOT NULL,
                    title TEXT NOT NULL,
                    model TEXT NOT NULL,
                    sample_rate INTEGER NOT NULL,
                    duration_s REAL NOT NULL,
                    user_audio BLOB NOT NULL,
                    assistant_audio BLOB NOT NULL
                )""")
            self.db.execute("""
                CREATE TABLE IF NOT EXISTS conversation_turns (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
                    position INTEGER NOT NULL,
                    speaker TEXT NOT NULL,
                    text TEXT NOT NULL,
                    start_s REAL NOT NULL,
                    end_s REAL NOT NULL,
                    interrupted INTEGER NOT NULL
                )""")
            self.db["conversation_turns"].create_index(["conversation_id", "position"], if_not_exists=True)
            columns = self.db["conversation_turns"].columns_dict  # databases from before these columns
            if "typed" not in columns:
                self.db.execute("ALTER TABLE conversation_turns ADD COLUMN typed INTEGER NOT NULL DEFAULT 0")
            if "sources" not in columns:
                self.db.execute("ALTER TABLE conversation_turns ADD COLUMN sources TEXT NOT NULL DEFAULT '[]'")

    def save(self, *, started_at: str, ended_at: str, model: str, sample_rate: int,
             user_audio: np.ndarray, assistant_audio: np.ndarray, turns: list[Turn]) -> int:
        """Store one finished conversation (in one transaction) and return its id."""
        assert len(user_audio) == len(assistant_audio), (
            "both channels must be aligned frame by frame: pad the shorter one before saving"
        )
        for turn in turns:
            assert turn.speaker in SPEAKER_LABELS, f"unknown speaker {turn.speaker!r}"
        with self.write():
            cursor = self.db.execute(
                "INSERT INTO conversations (started_at, ended_at, title, model, sample_rate, duration_s, "
                "user_audio, assistant_audio) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [started_at, ended_at, _title_of(turns), model, sample_rate, len(user_audio) / sample_rate,
                 _to_pcm16(user_audio), _to_pcm16(assistant_audio)],
            )
            conversation_id = cursor.lastrowid
            self.db["conversation_turns"].insert_all(
                {"conversation_id": conversation_id, "position": position, "speaker": turn.speaker,
                 "text": turn.text, "start_s": turn.start_s, "end_s": turn.end_s,
                 "interrupted": int(turn.interrupted), "typed": int(turn.typed),
                 "sources": json.dumps([asdict(source) for source in turn.sources])}
                for position, turn in enumerate(turns)
            )
        return conversation_id

    def list(self) -> list[ConversationSummary]:
        """Newest first, without the audio."""
        rows = self.db.execute(
            "SELECT c.id, c.started_at, c.title, c.model, c.duration_s, "
            "(SELECT COUNT(*) FROM conversation_turns t WHERE t.conversation_id = c.id) "
            "FROM conversations c ORDER BY c.id DESC"
        ).fetchall()
        return [ConversationSummary(*row) for row in rows]

    def get(self, conversation_id: int) -> Conversation:
        row = self.db.execute(
            "SELECT id, started_at, ended_at, title, model, sample_rate, user_audio, assistant_audio "
            "FROM conversations WHERE id = ?", [conversation_id]
        ).fetchone()
        if row is None:
            raise KeyError(f"no conversation #{conversation_id}")
        turns = [
            Turn(speaker, text, start_s, end_s, bool(interrupted), bool(typed),
                 tuple(SourceRef(**source) for source in json.loads(sources)))
            for speaker, text, start_s, end_s, interrupted, typed, sources in self.db.execute(
                "SELECT speaker, text, start_s, end_s, interrupted, typed, sources FROM conversation_turns "
                "WHERE conversation_id = ? ORDER BY position", [conversation_id]
            ).fetchall()
        ]
        return Conversation(id=row[0], started_at=row[1], ended_at=row[2], title=row[3], model=row[4],
                            sample_rate=row[5], user_audio=_from_pcm16(row[6]),
                            assistant_audio=_from_pcm16(row[7]), turns=turns)

    def delete(self, conversation_id: int) -> None:
        with self.write():
            self.db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    def export(self, conversation_id: int, wav_path: Path | str, overwrite: bool = False) -> tuple[Path, Path]:
        """Write a stereo WAV (left: the user, right: Michi) and, beside it, the transcript as .txt.

        A name without .wav gets it ("meeting" -> meeting.wav + meeting.txt). Raises
        FileExistsError, naming them, when either file exists and `overwrite` is False.
        """
        conversation = self.get(conversation_id)
        wav_path = Path(wav_path)
        if wav_path.suffix.lower() != ".wav":
            wav_path = wav_path.with_name(wav_path.name + ".wav")
        existing = [path.name for path in (wav_path, wav_path.with_suffix(".txt")) if path.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''} "
                                  f"in {wav_path.parent}")
        stereo = np.stack([conversation.user_audio, conversation.assistant_audio], axis=1)
        save_audio(wav_path, stereo, conversation.sample_rate)
        text_path = wav_path.with_suffix(".txt")
        text_path.write_text(
            f"{conversation.title}\nstarted {conversation.started_at}, model {conversation.model}\n\n"
            + format_transcript(conversation.turns), encoding="utf-8")
        return wav_path, text_path
