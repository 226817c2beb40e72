"""A horizontal level meter (dBFS) with a peak marker, drawn with QPainter.

It is fed at the GUI's poll rate (~30 Hz) with the RMS of the latest audio; the bar falls back
smoothly rather than flickering, and the peak marker holds for a moment so that a short word is
still visible after it ends.
"""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

FLOOR_DB = -60.0  # the left end of the scale: quieter than a quiet room
FALL_DB_PER_S = 30.0  # how fast the bar sinks when the sound stops
PEAK_HOLD_S = 1.2


def to_dbfs(rms: float) -> float:
    return max(FLOOR_DB, 20.0 * math.log10(rms)) if rms > 0 else FLOOR_DB


class LevelMeter(QWidget):
    def __init__(self, label: str, color: QColor | str, parent: QWidget | None = None):
        super().__init__(parent)
        self.label = label
        self.color = QColor(color)
        self.level_db = FLOOR_DB  # shown bar level
        self.peak_db = FLOOR_DB
        self._peak_time = 0.0
        self._last_update = time.monotonic()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName(f"{label} level")

    def sizeHint(self) -> QSize:
        return QSize(240, 30)

    def set_level(self, rms: float) -> None:
        """Show the RMS (linear, 0..1) of the latest audio."""
        now = time.monotonic()
        elapsed, self._last_update = now - self._last_update, now
        target = to_dbfs(rms)
        self.level_db = max(target, self.level_db - FALL_DB_PER_S * elapsed)
        if self.level_db >= self.peak_db or now - self._peak_time > PEAK_HOLD_S:
            self.peak_db, self._peak_time = self.level_db, now
        self.update()

    def reset(self) -> None:
        self.level_db = self.peak_db = FLOOR_DB
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        label_width = 52
        painter.setPen(self.palette().windowText().color())
        painter.drawText(QRectF(0, 0, label_width, self.height()),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, self.label)
        track = QRectF(label_width, self.height() / 2 - 6, self.width() - label_width - 2, 12)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self.palette().base().color())
        painter.drawRoundedRect(track, 6, 6)

        fraction = (self.level_db - FLOOR_DB) / -FLOOR_DB
        if fraction > 0:
            gradient = QLinearGradient(track.topLeft(), track.topRight())
            gradient.setColorAt(0.0, self.color.darker(150))
            gradient.setColorAt(0.8, self.color)
            gradient.setColorAt(1.0, QColor("#ff5c5c"))  # the last few dB: close to clipping
            painter.setBrush(gradient)
            bar = QRectF(track.left(), track.top(), track.width() * fraction, track.height())
            painter.drawRoundedRect(bar, 6, 6)
        peak = (self.peak_db - FLOOR_DB) / -FLOOR_DB
        if peak > 0:
            x = track.left() + track.width() * peak
            painter.setPen(QPen(self.color.lighter(140), 2))
            painter.drawLine(x, track.top() - 2, x, track.bottom() + 2)
        painter.end()
