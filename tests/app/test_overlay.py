"""The latency overlay: toggled with Ctrl+L, its numbers move with a live call, and it exports."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from app_fixtures import end_every_call, looping
from fake_sounddevice import FakeSoundDevice
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel

from app.latency import LatencySnapshot
from app.main_window import MainWindow
from app.model_loader import LoadRequest
from app.widgets.conversation_control import CallState
from app.widgets.latency_overlay import OVER_BUDGET, UNDER_BUDGET, LatencyOverlay
from michi_core.model.config import CodecConfig


@pytest.fixture(autouse=True)
def every_call_ends(qtbot):
    yield
    end_every_call(qtbot)


def _count_hue(image, color: QColor) -> int:
    """Strongly coloured pixels of `color`'s hue (antialiasing blends a thin line with the
    background, which changes its brightness but hardly its hue)."""
    count = 0
    for y in range(image.height()):
        for x in range(0, image.width(), 2):
            pixel = image.pixelColor(x, y)
            hue_gap = abs(pixel.hsvHue() - color.hsvHue())
            if pixel.hsvSaturation() > 100 and min(hue_gap, 360 - hue_gap) < 15:
                count += 1
    return count


@pytest.mark.parametrize("step_ms, line_color", [(30.0, UNDER_BUDGET), (120.0, OVER_BUDGET)])
def test_the_plot_draws_step_times_in_the_budget_colours(qtbot, step_ms, line_color):
    overlay = LatencyOverlay()
    qtbot.addWidget(overlay)
    steps = list(np.full(100, step_ms))
    overlay.set_snapshot(LatencySnapshot(
        budget_ms=80.0, step_ms=steps, step_p50_ms=step_ms, step_p95_ms=step_ms, ttfa_ms=95.0,
        response_ms=210.0, lag_s=0.31, buffer_ms=40.0, underruns=2, frames=100,
        device="USB Headset @ 48000 Hz", backbone="llama.cpp"))
    rows = dict(overlay.rows())
    assert rows["backbone"] == "llama.cpp", "the overlay says what runs the backbone"
    assert rows["TTFA, last turn"] == "95 ms" and rows["response latency"] == "210 ms"
    assert rows["lag (mic − played)"] == "0.31 s" and rows["underruns / xruns"] == "2 / 0"
    image = overlay.grab().toImage()
    assert _count_hue(image, line_color) > 40, "the step-time line is drawn, in the colour of its verdict"
    if line_color == OVER_BUDGET:
        assert _count_hue(image, UNDER_BUDGET) < 10, "over budget, nothing may be drawn in the 'fine' colour"


def test_overlay_numbers_move_during_a_call_and_export(qtbot, tmp_path, speech_like):
    # Speech, then silence: the VAD sees the user stop, so the reply's latency gets measured.
    rate = CodecConfig.sample_rate
    voice = np.concatenate([speech_like(1.2, seed=3), np.zeros(int(0.8 * rate), np.float32)])
    window = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                        sounddevice_module=FakeSoundDevice(mic_source=looping(voice)),
                        load_request=LoadRequest(preset_name="tiny"), store_path=tmp_path / "db.sqlite3",
                        documents_panel_factory=lambda: QLabel("documents"))
    qtbot.addWidget(window)
    window.show()
    qtbot.wait_until(lambda: window.control.state is CallState.READY, timeout=30_000)  # no loading dialog
    window.activateWindow()
    qtbot.wait_active(window)  # shortcuts reach the active window only
    assert not window.overlay.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert window.overlay.isVisible() and window.overlay_action.isChecked()
    assert window.overlay.geometry().right() <= window.tabs.width(), "the overlay sits inside the window"

    window.start_conversation()
    qtbot.wait_until(lambda: window.overlay.snapshot.frames >= 5, timeout=20_000)
    early = dict(window.overlay.rows())
    qtbot.wait_until(lambda: window.overlay.snapshot.response_ms is not None, timeout=20_000)
    late = dict(window.overlay.rows())
    snapshot = window.overlay.snapshot
    assert late["frames / dropped"] != early["frames / dropped"], "the numbers follow the call"
    assert len(snapshot.step_ms) > 5 and snapshot.step_p50_ms > 0
    assert 0 < snapshot.ttfa_ms <= snapshot.response_ms < 2000, (
        "a reply is played after it is produced, and well within two seconds on the tiny model"
    )
    assert "Michi virtual device" in late["device"]

    json_path = window.export_latency(tmp_path / "latency.json")
    exported = json.loads(json_path.read_text())
    assert exported["budget_ms"] == 80.0 and exported["frames"] >= snapshot.frames
    with open(window.export_latency(tmp_path / "latency.csv"), newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(exported["step_ms"]) and float(rows[-1]["step_ms"]) > 0
    with qtbot.wait_signal(window.call_ended, timeout=10_000):
        window.stop_conversation()
