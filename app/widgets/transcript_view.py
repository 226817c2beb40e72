"""The conversation transcript as chat bubbles: the user on the right, Michi on the left.

It shows a list of `Turn`s (app/transcript.py decides which words have been heard); it re-renders
only when the turns change, and follows the end of the conversation unless the user has
scrolled up to read.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from app.theme import ASSISTANT_COLOR, USER_COLOR
from michi_core.stores.conversations import ASSISTANT, SPEAKER_LABELS, Turn

EMPTY_HINT = ("Press <b>Start</b> and talk. Michi listens while it speaks, so you can interrupt "
              "it at any moment, just like on a phone call.")


SOURCE_SCHEME = "michi-source"  # links under a turn: michi-source:<turn>/<source>


class TranscriptView(QTextBrowser):
    source_clicked = Signal(object)  # the SourceRef of a passage a turn was answered from

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("transcript")
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self._turns: list[Turn] = []
        # Follow the end of the conversation until the user scrolls up to read; scrolling back
        # to the end follows again. Only the user's own scrolling changes this: re-rendering
        # resets the scroll position and lays the document out later, which must not count.
        self._follow = True
        self.verticalScrollBar().actionTriggered.connect(self._on_user_scroll)
        self.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self._render()

    @property
    def following(self) -> bool:
        return self._follow

    def _on_user_scroll(self, _action: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = bar.sliderPosition() >= bar.maximum() - 8

    def wheelEvent(self, event) -> None:
        super().wheelEvent(event)
        bar = self.verticalScrollBar()
        self._follow = bar.value() >= bar.maximum() - 8

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:  # the layout grew after a render: keep the end in view
            self.verticalScrollBar().setValue(maximum)

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() != SOURCE_SCHEME:
            return
        try:
            turn, source = (int(part) for part in url.path().split("/"))
            self.source_clicked.emit(self._turns[turn].sources[source])
        except (ValueError, IndexError):  # a stale link from before the turns changed
            return

    def source_link(self, turn: int, source: int) -> QUrl:
        return QUrl(f"{SOURCE_SCHEME}:{turn}/{source}")

    @property
    def turns(self) -> list[Turn]:
        return list(self._turns)

    def text_of(self, speaker: str) -> str:
        """All the words shown for one speaker (tests and accessibility read this)."""
        return " ".join(turn.text for turn in self._turns if turn.speaker == speaker)

    def set_turns(self, turns: list[Turn]) -> None:
        if turns == self._turns:
            return
        self._turns = list(turns)
        self._render()

    def clear_turns(self) -> None:
        self.set_turns([])

    def _render(self) -> None:
        scrollbar = self.verticalScrollBar()
        kept = scrollbar.value()
        anchor = self.cursorForPosition(self.viewport().rect().topLeft()).position()
        if not self._turns:
            self._follow = True
            self.setHtml(f"<p style='color:#8a8f98; margin:24px;'>{EMPTY_HINT}</p>")
            return
        self.setHtml("".join(self._bubble(i, turn) for i, turn in enumerate(self._turns)))
        # The text cursor decides where Qt scrolls once the new layout is done: at the end while
        # following, else where the user was reading.
        cursor = self.textCursor()
        if self._follow:
            cursor.movePosition(QTextCursor.MoveOperation.End)
        else:
            cursor.setPosition(min(anchor, len(self.toPlainText())))
        self.setTextCursor(cursor)
        scrollbar.setValue(scrollbar.maximum() if self._follow else kept)

    @staticmethod
    def _bubble(index: int, turn: Turn) -> str:
        mine = turn.speaker != ASSISTANT
        minutes, seconds = divmod(int(turn.start_s), 60)
        cut = " · interrupted" if turn.interrupted else ""
        cut += " · typed" if turn.typed else ""
        sources = "".join(
            f"<br/><span style='font-size:small; color:#8a8f98;'>Source: <a style='color:#8fb8ff;' "
            f"href='{SOURCE_SCHEME}:{index}/{k}'>{html.escape(source.label)}</a></span>"
            for k, source in enumerate(turn.sources))
        name_color = USER_COLOR if mine else ASSISTANT_COLOR
        background = "#203b3a" if mine else "#2a2d35"
        return (
            f"<table width='72%' align='{'right' if mine else 'left'}' cellpadding='9' cellspacing='0' "
            f"style='margin-top: 4px; margin-bottom: 4px; background-color:{background};'>"
            f"<tr><td style='color:#e8e9ed;'>"
            f"<span style='font-size:small; font-weight:600; color:{name_color};'>"
            f"{SPEAKER_LABELS[turn.speaker]}</span>"
            f"<span style='font-size:small; color:#8a8f98;'>&nbsp;&nbsp;{minutes}:{seconds:02d}{cut}</span>"
            "<br/>"
            f"{html.escape(turn.text)}{sources}</td></tr></table>"
        )
