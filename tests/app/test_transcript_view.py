"""The transcript view follows the conversation's end, unless the user scrolled up to read."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractSlider

from app.widgets.transcript_view import TranscriptView
from michi_core.stores.conversations import ASSISTANT, USER, Turn


def turns(n: int) -> list[Turn]:
    return [Turn(USER if i % 2 else ASSISTANT, f"turn number {i} " * 6, i * 1.0, i + 1.0) for i in range(n)]


def at_end(view: TranscriptView) -> bool:
    bar = view.verticalScrollBar()
    return bar.maximum() > 0 and bar.value() >= bar.maximum() - 8


def test_new_turns_keep_the_end_in_view_until_the_user_scrolls_up(qtbot):
    view = TranscriptView()
    qtbot.addWidget(view)
    view.resize(500, 300)
    view.show()
    for n in range(1, 40):  # a call: the transcript grows a turn at a time, re-rendered each time
        view.set_turns(turns(n))
        qtbot.wait(1)
    qtbot.wait_until(lambda: at_end(view), timeout=2_000)

    view.verticalScrollBar().triggerAction(QAbstractSlider.SliderAction.SliderToMinimum)  # the user scrolls up
    assert not view.following
    view.set_turns(turns(41))
    qtbot.wait(20)
    assert view.verticalScrollBar().value() == 0, "reading earlier turns is not interrupted"

    view.verticalScrollBar().triggerAction(QAbstractSlider.SliderAction.SliderToMaximum)  # back to the end
    view.set_turns(turns(45))
    qtbot.wait_until(lambda: at_end(view), timeout=2_000)
    assert view.following
