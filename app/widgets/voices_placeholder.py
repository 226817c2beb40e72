"""The Voices tab until voice enrollment lands (its own issue): says what will be here, so the
tab is not an unexplained blank page, and keeps the slot the real panel will take."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class VoicesPlaceholder(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        message = QLabel(
            "<h3>Voices</h3>"
            "<p>Soon you will record a few seconds of a voice here and Michi will answer in it.</p>"
            "<p style='color:#8a8f98'>For now Michi speaks in its default voice.</p>"
        )
        message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        message.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(message)
