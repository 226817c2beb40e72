"""The live transcript's user side: the recognizer's words arrive a second or so after they were
said, often after the assistant began answering; they still belong to the turn they were said in."""

from __future__ import annotations

from app.transcript import Transcript
from michi_core.stores.conversations import ASSISTANT, USER

FRAME_S = 0.08


def test_late_words_land_in_the_turn_they_were_spoken_in():
    transcript = Transcript(FRAME_S)
    transcript.user_started_speaking()
    transcript.add_user_text(20, " What", spoken_frame=10)
    transcript.add_assistant_text(40, " Paris", play_at=0)  # the answer starts at frame 40...
    transcript.add_user_text(42, " time", spoken_frame=30)  # ...before the user's last words arrive
    transcript.add_user_text(43, " is it?", spoken_frame=33)
    turns = transcript.turns()
    assert [(t.speaker, t.text) for t in turns] == [(USER, "What time is it?"), (ASSISTANT, "Paris")]
    assert turns[0].start_s == 10 * FRAME_S and turns[0].end_s == 34 * FRAME_S  # when it was said
    assert transcript.user_text_since(10) == "What time is it?"


def test_words_said_after_the_answer_began_open_a_new_turn():
    transcript = Transcript(FRAME_S)
    transcript.add_user_text(12, " Hello", spoken_frame=5)
    transcript.add_assistant_text(20, " Hi", play_at=0)
    transcript.add_user_text(60, " again", spoken_frame=50)  # said after the answer started: a new turn
    assert [(t.speaker, t.text) for t in transcript.turns()] == [(USER, "Hello"), (ASSISTANT, "Hi"),
                                                                 (USER, "again")]
