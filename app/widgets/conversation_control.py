"""The conversation control: one large round Start/Stop button, the mic mute, and a state line.

The button is the only thing a user must find, so it is big, round and says what it will do.
It reflects the app's state (no model yet, loading, ready, live, stopping) and refuses clicks that
make no sense in that state instead of queueing them.
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class CallState(Enum):
    NO_MODEL = "no model"
    LOADING = "loading model"
    READY = "ready"
    STARTING = "starting"
    LIVE = "live"
    STOPPING = "stopping"


_BUTTON_TEXT = {
    CallState.NO_MODEL: "No model",
    CallState.LOADING: "Loading…",
    CallState.READY: "Start",
    CallState.STARTING: "Starting…",
    CallState.LIVE: "Stop",
    CallState.STOPPING: "Stopping…",
}

_HINT = {
    CallState.NO_MODEL: "Load a model in Settings to talk",
    CallState.LOADING: "Preparing the model…",
    CallState.READY: "Click and talk",
    CallState.STARTING: "Opening the audio device…",
    CallState.LIVE: "Talk any time, even over Michi",
    CallState.STOPPING: "Saving the conversation…",
}


class ConversationControl(QWidget):
    start_requested = Signal()
    stop_requested = Signal()
    mute_toggled = Signal(bool)

    DIAMETER = 132

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = CallState.NO_MODEL
        self.start_button = QPushButton()
        self.start_button.setObjectName("callButton")
        self.start_button.setFixedSize(QSize(self.DIAMETER, self.DIAMETER))
        self.start_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.start_button.clicked.connect(self._on_clicked)

        self.mute_button = QPushButton("Mute mic")
        self.mute_button.setObjectName("muteButton")
        self.mute_button.setCheckable(True)
        self.mute_button.setToolTip("The model hears silence while muted (Ctrl+M)")
        self.mute_button.setShortcut("Ctrl+M")
        self.mute_button.toggled.connect(self._on_mute_toggled)

        self.hint = QLabel()
        self.hint.setObjectName("callHint")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)

        layout = QVBoxLayout(self)
        layout.addWidget(self.start_button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.hint)
        layout.addWidget(self.mute_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self.set_state(CallState.NO_MODEL)

    @property
    def muted(self) -> bool:
        return self.mute_button.isChecked()

    def set_state(self, state: CallState) -> None:
        self.state = state
        self.start_button.setText(_BUTTON_TEXT[state])
        self.start_button.setEnabled(state in (CallState.READY, CallState.LIVE))
        self.start_button.setProperty("live", state is CallState.LIVE)
        self.start_button.setToolTip("Stop the conversation (Space)" if state is CallState.LIVE
                                     else "Start a conversation (Space)")
        self.start_button.style().unpolish(self.start_button)  # re-read the `live` property's style
        self.start_button.style().polish(self.start_button)
        self.hint.setText(_HINT[state])

    def _on_clicked(self) -> None:
        if self.state is CallState.READY:
            self.start_requested.emit()
        elif self.state is CallState.LIVE:
            self.stop_requested.emit()

    def _on_mute_toggled(self, muted: bool) -> None:
        self.mute_button.setText("Unmute mic" if muted else "Mute mic")
        self.mute_toggled.emit(muted)
