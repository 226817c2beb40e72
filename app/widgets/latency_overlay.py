"""The latency overlay: a translucent panel over the window with a live plot of step time against
the frame budget, and the latency numbers of `app/latency.py` (TTFA, response latency, lag).

Drawn entirely with QPainter: PySide6-Essentials has no QtCharts, and a plot of 150 points at
30 Hz does not need it. It does not take the mouse, so the app under it stays usable.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QWidget

from app.latency import HISTORY_FRAMES, LatencySnapshot

OVER_BUDGET = QColor("#ff6b6b")
UNDER_BUDGET = QColor("#5fd0c2")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


class LatencyOverlay(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("latencyOverlay")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.snapshot = LatencySnapshot(budget_ms=80.0)
        self.resize(self.sizeHint())

    def sizeHint(self) -> QSize:
        return QSize(380, 286)

    def rows(self) -> list[tuple[str, str]]:
        """The numbers shown under the plot, as (label, value) — also what tests read."""
        s = self.snapshot
        return [
            ("step p50 / p95", f"{_ms(s.step_p50_ms)} / {_ms(s.step_p95_ms)}  (budget {s.budget_ms:.0f} ms)"),
            ("TTFA, last turn", _ms(s.ttfa_ms)),
            ("response latency", _ms(s.response_ms)),
            ("lag (mic − played)", f"{s.lag_s:.2f} s"),
            ("playback buffer", f"{s.buffer_ms:.0f} ms"),
            ("underruns / xruns", f"{s.underruns} / {s.xruns}"),
            ("frames / dropped", f"{s.frames} / {s.dropped_frames}"),
            ("device", s.device or "—"),
            ("backbone", s.backbone or "—"),
        ]

    def set_snapshot(self, snapshot: LatencySnapshot) -> None:
        self.snapshot = snapshot
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(18, 20, 26, 242))  # translucent, yet readable over text
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 10, 10)

        margin = 12.0
        title_font = QFont(self.font())
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(QColor("#e8e9ed"))
        painter.drawText(QRectF(margin, 6, self.width() - 2 * margin, 20), Qt.AlignmentFlag.AlignLeft,
                         "Latency")
        painter.setFont(self.font())
        painter.setPen(QColor("#8a8f98"))
        painter.drawText(QRectF(margin, 6, self.width() - 2 * margin, 20), Qt.AlignmentFlag.AlignRight,
                         "Ctrl+L to hide")

        plot = QRectF(margin + 28, 30, self.width() - 2 * margin - 28, 96)
        self._draw_plot(painter, plot)

        line_height = 16.0
        top = plot.bottom() + 10
        for i, (label, value) in enumerate(self.rows()):
            row = QRectF(margin, top + i * line_height, self.width() - 2 * margin, line_height)
            painter.setPen(QColor("#8a8f98"))
            painter.drawText(row, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)
            painter.setPen(QColor("#e8e9ed"))
            value_box = row.adjusted(130, 0, 0, 0)
            shown = painter.fontMetrics().elidedText(value, Qt.TextElideMode.ElideRight,
                                                     int(value_box.width()))
            painter.drawText(value_box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, shown)
        painter.end()

    def _draw_plot(self, painter: QPainter, plot: QRectF) -> None:
        s = self.snapshot
        steps = s.step_ms
        scale_ms = max(2 * s.budget_ms, max(steps, default=0.0) * 1.15)  # the budget line stays in view
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(255, 255, 255, 14))
        painter.drawRect(plot)

        def y_of(ms: float) -> float:
            return plot.bottom() - plot.height() * min(ms, scale_ms) / scale_ms

        budget_y = y_of(s.budget_ms)
        painter.setPen(QPen(OVER_BUDGET, 1, Qt.PenStyle.DashLine))
        painter.drawLine(QPointF(plot.left(), budget_y), QPointF(plot.right(), budget_y))
        painter.setPen(QColor("#8a8f98"))
        small = QFont(self.font())
        small.setPointSizeF(max(6.0, self.font().pointSizeF() * 0.8))
        painter.setFont(small)
        painter.drawText(QRectF(plot.left() - 30, budget_y - 8, 26, 16),
                         Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{s.budget_ms:.0f}")
        painter.drawText(QRectF(plot.left() - 30, plot.bottom() - 10, 26, 12),
                         Qt.AlignmentFlag.AlignRight, "0")
        painter.drawText(QRectF(plot.left() - 30, plot.top() - 2, 26, 12), Qt.AlignmentFlag.AlignRight,
                         f"{scale_ms:.0f}")
        painter.setFont(self.font())
        if not steps:
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "step time appears here during a call")
            return
        dx = plot.width() / max(1, HISTORY_FRAMES - 1)
        x0 = plot.right() - dx * (len(steps) - 1)  # newest at the right edge
        path = QPainterPath(QPointF(x0, y_of(steps[0])))
        for i, ms in enumerate(steps[1:], start=1):
            path.lineTo(QPointF(x0 + i * dx, y_of(ms)))
        slow = (s.step_p95_ms or 0.0) > s.budget_ms
        painter.setPen(QPen(OVER_BUDGET if slow else UNDER_BUDGET, 1.6))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(path)
