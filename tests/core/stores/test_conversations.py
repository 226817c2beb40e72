"""The conversation store: what the app saves comes back intact, and exports play and read right."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from michi_core.paths import database_path
from michi_core.stores.conversations import ASSISTANT, USER, ConversationStore, Turn

RATE = 24_000


def _save(store: ConversationStore, turns: list[Turn], seconds: float = 1.0) -> int:
    t = np.arange(int(seconds * RATE)) / RATE
    return store.save(started_at="2025-01-01T10:00:00+00:00", ended_at="2025-01-01T10:00:01+00:00",
                      model="tiny", sample_rate=RATE,
                      user_audio=0.5 * np.sin(2 * np.pi * 220 * t).astype(np.float32),
                      assistant_audio=-0.25 * np.ones_like(t, dtype=np.float32), turns=turns)


TURNS = [
    Turn(USER, "what is the weather like on the coast today", 0.0, 0.8),
    Turn(ASSISTANT, "It is sunny and", 0.8, 1.0, interrupted=True),
]


def test_save_and_get_round_trip_audio_and_turns():
    with ConversationStore() as store:
        conversation_id = _save(store, TURNS)
        conversation = store.get(conversation_id)
    assert store.path == database_path(), "the store lives in Michi's one database by default"
    assert conversation.turns == TURNS
    assert conversation.title == "what is the weather like on the coast…", "named by the user's first words"
    assert conversation.duration_s == pytest.approx(1.0)
    assert np.abs(conversation.user_audio.max() - 0.5) < 1e-3, "16-bit storage keeps the level"
    assert np.allclose(conversation.assistant_audio, -0.25, atol=1e-4)


def test_list_is_newest_first_and_delete_removes_turns():
    with ConversationStore() as store:
        first = _save(store, TURNS)
        second = _save(store, [])
        summaries = store.list()
        assert [s.id for s in summaries] == [second, first]
        assert summaries[0].title == "Conversation" and summaries[1].turn_count == 2
        store.delete(first)
        assert [s.id for s in store.list()] == [second]
        orphans = store.db.execute("SELECT COUNT(*) FROM conversation_turns").fetchone()[0]
        assert orphans == 0, "deleting a conversation must delete its turns"
        with pytest.raises(KeyError):
            store.get(first)


def test_misaligned_channels_are_refused():
    with ConversationStore() as store, pytest.raises(AssertionError, match="aligned"):
        store.save(started_at="", ended_at="", model="tiny", sample_rate=RATE,
                   user_audio=np.zeros(10, np.float32), assistant_audio=np.zeros(20, np.float32), turns=[])


def test_export_writes_stereo_wav_and_transcript(tmp_path):
    with ConversationStore() as store:
        wav, text = store.export(_save(store, TURNS), tmp_path / "out" / "call.wav")
    audio, rate = sf.read(wav)
    assert rate == RATE and audio.shape == (RATE, 2), "left: the user, right: Michi"
    assert audio[:, 1].mean() == pytest.approx(-0.25, abs=1e-3)
    lines = text.read_text().splitlines()
    assert "[00:00.0] You: what is the weather like on the coast today" in lines
    assert "[00:00.8] Michi: It is sunny and [interrupted]" in lines
