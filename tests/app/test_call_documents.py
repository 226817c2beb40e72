"""Documents and typed messages in a live call: the loop retrieves passages from the user's real
document store (MiniLM embeddings, SQLite) when an utterance ends or a message is typed, puts
them into the model's context, and the transcript shows and saves which passages were used.

The loop runs on the real audio path (AudioIO on the fake sounddevice) with the tiny model.
The tiny listen head is untrained, so where a test needs the user's words it writes them into
the transcript as the listen head would, then lets the (scripted) VAD end the utterance.
"""

from __future__ import annotations

import pytest
from app_fixtures import end_every_call, run_until, tiny_model
from fake_sounddevice import FakeSoundDevice, tone

from app.audio.echo import HeadphonesBypass
from app.audio.stream import AudioIO
from app.audio_port import SpeechEvents
from app.worker import ConversationLoop
from michi_core.session.engine import DuplexSession, SamplingSettings
from michi_core.stores.conversations import USER, ConversationStore
from michi_core.stores.rag import (
    ChunkingConfig,
    ContextInjector,
    DocumentStore,
    Ingestor,
    Retriever,
    default_embedder,
)

OAKHAVEN = (
    "In Oakhaven the sky is purple.\n\n"
    "The mayor of Oakhaven is Ada Quill.\n\n"
    "Bread in Oakhaven costs two coins.\n"
)
UNRELATED = "Penguins live in the southern hemisphere.\n\nThey cannot fly but they swim well.\n"


@pytest.fixture(autouse=True)
def every_call_ends(qtbot):
    yield
    end_every_call(qtbot)


class ScriptedVoiceActivity:
    """The test decides when the user starts and stops: `start()`/`end()` act on the next frame."""

    def __init__(self):
        self.speech_ended_at = None
        self._next = SpeechEvents()

    def start(self):
        self._next = SpeechEvents(started=True)

    def end(self):
        self._next = SpeechEvents(ended=True)

    def process(self, frame):
        events, self._next = self._next, SpeechEvents()
        return events


@pytest.fixture
def documents(tmp_path):
    """A real store with two small documents, indexed with the real embedder."""
    (tmp_path / "oakhaven.txt").write_text(OAKHAVEN, encoding="utf-8")
    (tmp_path / "penguins.txt").write_text(UNRELATED, encoding="utf-8")
    database = tmp_path / "michi.sqlite3"
    with DocumentStore(database) as store:
        results = Ingestor(store, default_embedder(), ChunkingConfig(max_tokens=12, overlap_tokens=0)).ingest(
            [tmp_path / "oakhaven.txt", tmp_path / "penguins.txt"])
    assert [r.status for r in results] == ["indexed", "indexed"], results
    return database


def injector_for(database, model) -> ContextInjector:
    # The tiny preset's window is 256 byte-tokens: a budget that fits one short passage.
    return ContextInjector(Retriever(DocumentStore(database), default_embedder()), budget=110,
                           measure=lambda text: len(model.tokenizer.encode(text)), max_passages=1)


def make_loop(model, injector=None, vad=None):
    audio = AudioIO(sd=FakeSoundDevice(speed=1.0, mic_source=tone(220.0)))
    session = DuplexSession(model, SamplingSettings(seed=0))
    loop = ConversationLoop(session, audio, vad or ScriptedVoiceActivity(), HeadphonesBypass(), injector)
    return loop, audio, session


def test_a_typed_question_brings_its_passage_into_the_context_and_the_transcript(documents):
    model = tiny_model()
    loop, audio, session = make_loop(model, injector_for(documents, model))
    plain, plain_audio, plain_session = make_loop(model)
    audio.start()
    plain_audio.start()
    try:
        run_until(loop, 2)
        run_until(plain, 2)
        before = session.context.length
        loop.send_text("What colour is the sky in Oakhaven?")
        plain.send_text("What colour is the sky in Oakhaven?")
        run_until(loop, 1)
        run_until(plain, 1)
    finally:
        audio.stop()
        plain_audio.stop()
    question = len(model.tokenizer.encode("What colour is the sky in Oakhaven?"))
    assert loop.injections == 1
    assert session.context.length - plain_session.context.length > 20, (
        "the passage must take positions in the model's context beyond the typed question itself")
    assert session.context.length - before > question + 1
    user_turns = [t for t in loop.snapshot().turns if t.typed]  # (the untrained listen head adds noise)
    assert [t.text for t in user_turns] == ["What colour is the sky in Oakhaven?"]
    [source] = user_turns[0].sources
    assert "purple" in source.text and source.path.endswith("oakhaven.txt")


def test_the_end_of_an_utterance_retrieves_for_what_was_said_and_never_repeats_a_passage(documents):
    model = tiny_model()
    vad = ScriptedVoiceActivity()
    loop, audio, session = make_loop(model, injector_for(documents, model), vad)
    audio.start()
    try:
        run_until(loop, 1)
        vad.start()
        run_until(loop, 1)
        # What the listen head would have written while the user spoke:
        loop.transcript.add_user_text(1, "who is the mayor of oakhaven")
        before = session.context.length
        vad.end()
        run_until(loop, 1)
        assert loop.injections == 1
        assert session.context.length - before > 20, "the passage went into the context before the answer"

        vad.start()  # the same question again: that passage is already in the context
        run_until(loop, 1)
        loop.transcript.add_user_text(loop._frames_fed, "the mayor of oakhaven, who is it")
        vad.end()
        run_until(loop, 1)
    finally:
        audio.stop()
    turns = [t for t in loop.snapshot().turns if t.speaker == USER]
    asked = [i for i, t in enumerate(turns) if "who is the mayor" in t.text]
    assert asked, turns
    assert turns[asked[0]].sources[0].text == "The mayor of Oakhaven is Ada Quill."
    used = [s.text for t in turns for s in t.sources]
    assert used.count("The mayor of Oakhaven is Ada Quill.") == 1, "a passage goes into one call's context once"
    assert len(used) == len(set(used)) == loop.injections == len(loop.injector.injected_chunk_ids)


def test_small_talk_injects_nothing(documents):
    model = tiny_model()
    loop, audio, session = make_loop(model, injector_for(documents, model))
    audio.start()
    try:
        run_until(loop, 1)
        loop.send_text("hello, how are you today?")
        run_until(loop, 1)
    finally:
        audio.stop()
    assert loop.injections == 0
    assert all(not t.sources for t in loop.snapshot().turns)


def test_sources_and_typed_turns_are_saved_with_the_conversation(documents, tmp_path):
    model = tiny_model()
    loop, audio, _ = make_loop(model, injector_for(documents, model))
    audio.start()
    try:
        run_until(loop, 1)
        loop.send_text("How much is bread in Oakhaven?")
        run_until(loop, 2)
    finally:
        audio.stop()
    user, assistant = loop.recording()
    with ConversationStore(tmp_path / "calls.sqlite3") as store:
        conversation_id = store.save(started_at="2026-12-02T10:00:00+00:00", ended_at="2026-12-02T10:00:01+00:00",
                                     model="tiny", sample_rate=24000, user_audio=user, assistant_audio=assistant,
                                     turns=loop.heard_turns())
        saved = store.get(conversation_id)
    [turn] = [t for t in saved.turns if t.typed]
    assert turn.speaker == USER and turn.sources and "two coins" in turn.sources[0].text


def test_a_broken_index_costs_the_documents_not_the_call(documents):
    model = tiny_model()

    class BrokenRetriever:
        store = None

        def search(self, *args, **kwargs):
            raise RuntimeError("database disk image is malformed")

    loop, audio, _ = make_loop(model, ContextInjector(BrokenRetriever()))
    audio.start()
    try:
        run_until(loop, 1)
        loop.send_text("What colour is the sky in Oakhaven?")
        run_until(loop, 3)
    finally:
        audio.stop()
    assert loop.injections == 0
    assert "documents failed" in (loop.warning() or "")
    assert [t.text for t in loop.snapshot().turns if t.typed] == ["What colour is the sky in Oakhaven?"]
