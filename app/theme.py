"""The app's look: Fusion with a dark palette and a short style sheet.

One place for colours, so the widgets that draw themselves (meters, overlay, transcript
bubbles) and the style sheet agree: teal is the user, warm orange is Michi.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

USER_COLOR = "#5fd0c2"
ASSISTANT_COLOR = "#ff9f5a"

_PALETTE = {
    QPalette.ColorRole.Window: "#1e2026",
    QPalette.ColorRole.WindowText: "#e8e9ed",
    QPalette.ColorRole.Base: "#15171c",
    QPalette.ColorRole.AlternateBase: "#23262d",
    QPalette.ColorRole.Text: "#e8e9ed",
    QPalette.ColorRole.Button: "#2a2d35",
    QPalette.ColorRole.ButtonText: "#e8e9ed",
    QPalette.ColorRole.Highlight: "#3a8f86",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.ToolTipBase: "#2a2d35",
    QPalette.ColorRole.ToolTipText: "#e8e9ed",
    QPalette.ColorRole.PlaceholderText: "#6c717b",
}

STYLE_SHEET = """
QPushButton#callButton {
    border-radius: 66px; font-size: 20px; font-weight: 600; color: #0f1a1c;
    background: qradialgradient(cx:0.5, cy:0.4, radius:0.7, fx:0.5, fy:0.3, stop:0 #7fe3d6, stop:1 #2f9e91);
    border: 3px solid #1e2026;
}
QPushButton#callButton:hover { border: 3px solid #7fe3d6; }
QPushButton#callButton[live="true"] {
    color: #ffffff;
    background: qradialgradient(cx:0.5, cy:0.4, radius:0.7, fx:0.5, fy:0.3, stop:0 #ff8a7a, stop:1 #d9453a);
}
QPushButton#callButton[live="true"]:hover { border: 3px solid #ffb3a8; }
QPushButton#callButton:disabled { color: #8a8f98; background: #2a2d35; }
QPushButton#muteButton {
    padding: 6px 18px; border-radius: 14px; background: #2a2d35; border: 1px solid #3a3e48;
}
QPushButton#muteButton:hover { border-color: #5fd0c2; }
QPushButton#muteButton:checked { background: #6b2e2e; border-color: #a44; color: #ffd6d6; }
QLabel#callHint, QLabel#hint { color: #8a8f98; }
QLabel#warning { color: #ffb454; }
QTextBrowser#transcript { border: none; border-radius: 10px; padding: 10px; background: #15171c; }
QTabWidget::pane { border: none; }
QTabBar::tab { padding: 8px 18px; }
QGroupBox { font-weight: 600; border: 1px solid #2f323a; border-radius: 8px; margin-top: 14px; padding: 8px; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; }
QStatusBar QLabel { padding: 0 8px; }
"""


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    for role, color in _PALETTE.items():
        palette.setColor(role, QColor(color))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6c717b"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6c717b"))
    app.setPalette(palette)
    app.setStyleSheet(STYLE_SHEET)
