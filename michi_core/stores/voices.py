"""The voice store: voices to clone from a few seconds of speech, in Michi's one SQLite database.

A voice is a row of `voices`: its name, the transcript of what is said (the enrollment script
that was read, or what the user typed), and the audio itself. The model needs the audio as codec
latents; those are cached in `voice_latents`, one row per voice, together with the *signature*
of the codec that encoded them (sha256 over the codec config and weights). A model whose codec
differs (another checkpoint, a retrained codec) would read those latents as a different voice,
or as noise, so `prompt_for` re-encodes the stored audio and updates the row instead of ever
handing out latents made by another codec.

Storage choice: the audio is a FLAC BLOB inside the `voices` row, not a file beside the
database. A voice is at most 15 s (about 300 kB as 16-bit FLAC, lossless and half the size of
raw PCM), and in the row it is written, renamed and deleted in the same transaction as its
metadata: a crash or a delete can never leave an orphan file or a row pointing at a missing
one, and backing up Michi's data stays one file. `voice_latents` is a separate table so that
re-encoding rewrites a few kB, never the audio, and listing voices never reads either.

A store object belongs to the thread that opened it (sqlite3's rule); other threads open their
own on the same path (WAL mode lets them read while one writes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import sqlite3
import unicodedata
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from michi_core.audio import AudioFileError, load_audio, pad_to_frames, resample
from michi_core.model.config import CodecConfig
from michi_core.model.model import MichiModel
from michi_core.session.engine import DuplexSession, SamplingSettings, VoicePrompt
from michi_core.stores.database import SqliteStore, StoreDamaged, StoreError
from michi_core.stores.voice_checks import (
    MAX_TAKE_S,
    TakeReport,
    best_segment,
    check_take,
    normalize_loudness,
)

log = logging.getLogger(__name__)

STORE_RATE = CodecConfig.sample_rate  # Hz: voices are kept at the rate Michi runs at
MAX_IMPORT_S = 600.0  # longer files are refused before decoding: cut a shorter clip first
MAX_NAME_LENGTH = 60
MAX_ID = 2**63 - 1  # SQLite's largest integer
MAX_SPEAK_S = 30.0  # speak() gives up after this much audio, whether or not the text is said


class VoiceError(ValueError):
    """A voice operation that cannot be done, with a message a user can act on."""


@dataclass(frozen=True)
class Voice:
    id: int
    name: str
    transcript: str  # what is said in the audio; "" when unknown
    duration_s: float
    source: str  # "recorded", or the name of the imported file
    created_at: str  # ISO 8601, UTC


# -- the codec signature ----------------------------------------------------------------------------

_signatures: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # codec -> (tensor versions, sha)


def model_signature(model: MichiModel) -> str:
    """sha256 (hex) over the codec's config and weights: equal exactly when latents are interchangeable.

    Hashing the weights takes a moment for a large codec, so the result is kept per codec object
    and recomputed only when one of its tensors was modified in place since (an optimizer step,
    `load_state_dict`): torch counts those modifications in each tensor's version counter.
    """
    codec = model.codec
    tensors = sorted(codec.state_dict(keep_vars=True).items())
    versions = tuple(tensor._version for _, tensor in tensors)
    cached = _signatures.get(codec)
    if cached is not None and cached[0] == versions:
        return cached[1]
    digest = hashlib.sha256()
    digest.update(json.dumps(dataclasses.asdict(codec.config), sort_keys=True).encode())
    for name, tensor in tensors:
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    _signatures[codec] = (versions, digest.hexdigest())
    return digest.hexdigest()


# -- audio in, audio out ---------------------------------------------------------------------------

def load_voice_file(path: str | Path, sample_rate: int = STORE_RATE,
                    max_seconds: float = MAX_TAKE_S) -> tuple[np.ndarray, TakeReport]:
    """An audio file (wav/flac/ogg, any rate or channels) made ready to store, and its check.

    Mono at `sample_rate`, cut to the best stretch of speech of at most `max_seconds`, brought
    to the standard loudness. The report's metrics add `source_duration_s`, the whole file's
    length, so a caller can warn that a transcript must match the part that was kept. Raises
    AudioFileError for a file that cannot be read.
    """
    whole = load_audio(path, sample_rate, max_seconds=MAX_IMPORT_S)
    wave = normalize_loudness(best_segment(whole, sample_rate, max_seconds), sample_rate)
    report = check_take(wave, sample_rate, max_seconds)
    report.metrics["source_duration_s"] = len(whole) / sample_rate
    return wave, report


def speak(model: MichiModel, text: str, voice: VoicePrompt | None = None,
          settings: SamplingSettings | None = None, max_seconds: float = MAX_SPEAK_S) -> np.ndarray:
    """`text` said through the streaming engine in `voice` (or the model's own), the user silent.

    This is the voices panel's preview and what an eval listens to for speaker similarity. The
    session keeps the model's device and backbone precision, so a preview never converts the
    model under a live call's feet. Returns float32 audio at the codec's rate.
    """
    session = DuplexSession(model, settings or SamplingSettings(), device=next(model.parameters()).device,
                            dtype=model.text_embedding.weight.dtype)
    if voice is not None:
        session.set_voice(voice)
    session.say(text)
    return np.concatenate([step.audio for step in session.run([], max_tail_seconds=max_seconds)])


def voice_from_audio(model: MichiModel, wave: np.ndarray, transcript: str = "") -> VoicePrompt:
    """Encode a 24 kHz recording into a voice prompt (codec posterior means), on the codec's device."""
    fs = model.config.codec.frame_size
    wave_t = torch.from_numpy(pad_to_frames(wave, fs))[None].to(next(model.parameters()).device)
    with torch.inference_mode(), model.codec.offline():
        latents = model.codec.encode(wave_t).mean[0]
    return VoicePrompt(latents=latents, transcript=transcript)


def resolve_voice(model: MichiModel, spec: str, store_path: Path | str | None = None) -> VoicePrompt:
    """`michi chat --voice`: an audio file's path, or a stored voice's id or name."""
    if Path(spec).is_file():
        rate = model.config.codec.sample_rate
        return voice_from_audio(model, load_audio(spec, rate, max_seconds=60))
    with VoiceStore(store_path) as store:
        voice = store.find(spec)
        if voice is None and isinstance(store.problem, StoreDamaged):
            raise store.problem
        if voice is None:
            raise AudioFileError(f"{spec}: neither an audio file nor a stored voice "
                                 "(see `michi voices list` for ids and names)")
        return store.prompt_for(voice.id, model)


def _to_flac(wave: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    wave = np.clip(wave, -1.0, 1.0).astype(np.float32)
    sf.write(buffer, wave, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _from_flac(blob: bytes) -> tuple[np.ndarray, int]:
    wave, rate = sf.read(io.BytesIO(blob), dtype="float32")
    return wave, rate


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- the store ----------------------------------------------------------------------------------------

class VoiceStore(SqliteStore):
    def _create_schema(self) -> None:
        with self.write():
            # AUTOINCREMENT: ids of removed voices are never reused, so a saved choice of voice
            # (settings, a script) can never silently point at a newer voice.
            self.db.execute("""
                CREATE TABLE IF NOT EXISTS voices (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL,
                    transcript TEXT NOT NULL,
                    duration_s REAL NOT NULL,
                    source TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    sample_rate INTEGER NOT NULL,
                    audio_flac BLOB NOT NULL
                )""")
            # Names are how people (and `michi chat --voice`) pick a voice: unique, whatever the case.
            self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS voices_name ON voices(name COLLATE NOCASE)")
            self.db.execute("""
                CREATE TABLE IF NOT EXISTS voice_latents (
                    voice_id INTEGER PRIMARY KEY REFERENCES voices(id) ON DELETE CASCADE,
                    model_signature TEXT NOT NULL,
                    frames INTEGER NOT NULL,
                    latent_dim INTEGER NOT NULL,
                    latents BLOB NOT NULL,  -- float32 little-endian, (frames, latent_dim)
                    encoded_at TEXT NOT NULL
                )""")

    # -- reading ---------------------------------------------------------------------------------

    def voices(self) -> list[Voice]:
        """Every voice, oldest first, without audio."""
        rows = self.db.execute(
            "SELECT id, name, transcript, duration_s, source, created_at FROM voices ORDER BY id").fetchall()
        return [Voice(*row) for row in rows]

    def get(self, voice_id: int) -> Voice:
        row = self.db.execute("SELECT id, name, transcript, duration_s, source, created_at FROM voices "
                              "WHERE id = ?", [voice_id]).fetchone()
        if row is None:
            raise VoiceError(f"no voice #{voice_id} (see `michi voices list`)")
        return Voice(*row)

    def find(self, id_or_name: str) -> Voice | None:
        """A voice by id ("3") or by name, whatever its case; None if there is none."""
        spec = id_or_name.strip()
        if spec.isascii() and spec.isdigit():  # "²" is a digit to Python, not an id
            if int(spec) > MAX_ID:
                return None  # no id is that large (SQLite would overflow)
            query, args = "id = ?", [int(spec)]
        else:
            query, args = "name = ? COLLATE NOCASE", [spec]
        row = self.db.execute("SELECT id, name, transcript, duration_s, source, created_at FROM voices "
                              f"WHERE {query}", args).fetchone()
        return Voice(*row) if row else None

    def audio(self, voice_id: int, sample_rate: int = STORE_RATE) -> np.ndarray:
        """The voice's audio, mono float32 at `sample_rate`."""
        row = self.db.execute("SELECT audio_flac FROM voices WHERE id = ?", [voice_id]).fetchone()
        if row is None:
            raise VoiceError(f"no voice #{voice_id} (see `michi voices list`)")
        wave, rate = _from_flac(row[0])
        return resample(wave, rate, sample_rate)

    # -- writing ---------------------------------------------------------------------------------

    def add(self, name: str, wave: np.ndarray, sample_rate: int, transcript: str = "",
            source: str = "recorded") -> Voice:
        """Store a voice (mono audio at any rate; kept at STORE_RATE). Latents come at first use.

        Encoding waits for `prompt_for` because only then is it known which model will speak:
        the CLI adds voices without loading a model at all.
        """
        name = self._valid_name(name)
        wave = resample(np.asarray(wave, dtype=np.float32), sample_rate, STORE_RATE)
        if wave.ndim != 1 or wave.size == 0:
            raise VoiceError("a voice needs mono audio with at least one sample")
        try:
            with self._voice_write():
                cursor = self.db.execute(
                    "INSERT INTO voices (name, transcript, duration_s, source, created_at, sample_rate, "
                    "audio_flac) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [name, transcript.strip(), len(wave) / STORE_RATE, source, _now(), STORE_RATE,
                     _to_flac(wave, STORE_RATE)])
        except sqlite3.IntegrityError:
            raise self._name_taken(name) from None
        voice = self.get(cursor.lastrowid)
        log.info("stored voice #%d %r (%.1f s, %s)", voice.id, voice.name, voice.duration_s, source)
        return voice

    def rename(self, voice_id: int, name: str) -> Voice:
        name = self._valid_name(name)
        self.get(voice_id)
        try:
            with self._voice_write():
                self.db.execute("UPDATE voices SET name = ? WHERE id = ?", [name, voice_id])
        except sqlite3.IntegrityError:
            raise self._name_taken(name) from None
        return self.get(voice_id)

    def remove(self, voice_id: int) -> bool:
        """Delete a voice and its cached latents; False if there was no such voice."""
        with self._voice_write():
            cursor = self.db.execute("DELETE FROM voices WHERE id = ?", [voice_id])
        return cursor.rowcount > 0

    @contextlib.contextmanager
    def _voice_write(self):
        """A write whose store problem (read-only, damaged) is a VoiceError: what the Voices panel
        and the enrollment dialog show the user."""
        try:
            with self.write():
                yield
        except StoreError as error:
            raise VoiceError(str(error)) from error

    def _valid_name(self, name: str) -> str:
        name = " ".join(name.split())
        if not name:
            raise VoiceError("give the voice a name")
        if len(name) > MAX_NAME_LENGTH:
            raise VoiceError(f"a voice name can be at most {MAX_NAME_LENGTH} characters")
        if name.isdigit():
            raise VoiceError("a voice name cannot be only digits: it would be taken for a voice id")
        if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
            raise VoiceError("a voice name cannot hold control or invisible formatting characters")
        return name

    def _name_taken(self, name: str) -> VoiceError:
        existing = self.find(name)
        return VoiceError(f"a voice named {name!r} exists already (#{existing.id}): choose another name, "
                          f"or remove that one first")

    # -- prompts for the model ---------------------------------------------------------------------------

    def prompt_for(self, voice_id: int, model: MichiModel) -> VoicePrompt:
        """The voice as a prompt for `model`: its cached latents if this model's codec made them,
        else the stored audio encoded now (and cached, replacing latents of another codec).

        Encoding runs the codec offline on the calling thread: call it between steps of a live
        session (or before one), never concurrently with one on the same model.
        """
        voice = self.get(voice_id)
        signature = model_signature(model)
        row = self.db.execute("SELECT model_signature, frames, latent_dim, latents FROM voice_latents "
                              "WHERE voice_id = ?", [voice_id]).fetchone()
        if row is not None and row[0] == signature:
            latents = np.frombuffer(row[3], dtype="<f4").reshape(row[1], row[2])
            return VoicePrompt(latents=torch.from_numpy(latents.copy()), transcript=voice.transcript)
        if row is not None:
            log.info("voice #%d was encoded by another codec (%s…): re-encoding it for this one (%s…)",
                     voice_id, row[0][:12], signature[:12])
        wave = self.audio(voice_id, model.config.codec.sample_rate)
        prompt = voice_from_audio(model, wave, voice.transcript)
        latents = prompt.latents.detach().to("cpu", torch.float32).numpy()
        if not self.writable:  # a read-only database: use the voice, cache it next time
            return VoicePrompt(latents=torch.from_numpy(latents.copy()), transcript=voice.transcript)
        with self.write():
            self.db["voice_latents"].upsert(
                {"voice_id": voice_id, "model_signature": signature, "frames": latents.shape[0],
                 "latent_dim": latents.shape[1], "latents": latents.astype("<f4").tobytes(),
                 "encoded_at": _now()},
                pk="voice_id")
        return VoicePrompt(latents=torch.from_numpy(latents.copy()), transcript=voice.transcript)
