"""The main window with real widgets, the real loader and worker, the tiny model and the fake
sound device (offscreen): what a user does with it, and what they must see."""

from __future__ import annotations

import time

import numpy as np
import pytest
from app_fixtures import end_every_call
from fake_sounddevice import FakeSoundDevice, tone
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QLabel, QTextBrowser

from app.main_window import MainWindow, default_documents_panel
from app.model_loader import LoadRequest
from app.threads import running_threads
from app.widgets.conversation_control import CallState
from app.widgets.level_meter import FLOOR_DB
from app.widgets.voices_panel import VoicesPanel
from michi_core.model.config import tiny
from michi_core.model.model import MichiModel
from michi_core.stores.conversations import USER, ConversationStore, SourceRef, Turn

FRAME_S = 0.08


@pytest.fixture(autouse=True)
def every_call_ends(qtbot):
    yield
    end_every_call(qtbot)


@pytest.fixture
def make_window(qtbot, tmp_path):
    """A window on the tiny preset, the fake device, a test database and its own settings file."""
    tiny_preset = LoadRequest(preset_name="tiny")

    def make(device: FakeSoundDevice | None = None, load_request: LoadRequest | None = tiny_preset,
             **kwargs) -> MainWindow:
        settings = kwargs.pop("settings", None) or QSettings(str(tmp_path / "settings.ini"),
                                                             QSettings.Format.IniFormat)
        window = MainWindow(settings=settings,
                            sounddevice_module=device or FakeSoundDevice(mic_source=tone(220.0)),
                            load_request=load_request, store_path=tmp_path / "michi.sqlite3",
                            documents_panel_factory=kwargs.pop("documents_panel_factory",
                                                               lambda: QLabel("documents")),
                            **kwargs)
        qtbot.addWidget(window)
        window.show()
        return window

    return make


def wait_ready(qtbot, window: MainWindow) -> None:
    qtbot.wait_until(lambda: window.control.state is CallState.READY, timeout=30_000)


def start_call(qtbot, window: MainWindow, frames: int = 5) -> None:
    wait_ready(qtbot, window)
    qtbot.mouseClick(window.control.start_button, Qt.MouseButton.LeftButton)
    qtbot.wait_until(lambda: window.control.state is CallState.LIVE, timeout=10_000)
    qtbot.wait_until(lambda: window.latency_snapshot().frames >= frames, timeout=20_000)


def stop_call(qtbot, window: MainWindow):
    with qtbot.wait_signal(window.call_ended, timeout=10_000) as ended:
        qtbot.mouseClick(window.control.start_button, Qt.MouseButton.LeftButton)
    return ended.args[0]


def test_start_talk_stop_saves_and_exports_the_conversation(qtbot, make_window, tmp_path):
    window = make_window()
    assert window.control.state in (CallState.NO_MODEL, CallState.LOADING), (
        "the model loads after the window shows")
    wait_ready(qtbot, window)
    assert window.model_label.text() == "Model: tiny · cpu"
    assert window.control.start_button.text() == "Start"

    start_call(qtbot, window, frames=12)
    assert window.control.start_button.text() == "Stop"
    assert "Michi virtual device" in window.device_label.text()
    qtbot.wait_until(lambda: window.user_meter.level_db > -20 and window.assistant_meter.level_db > FLOOR_DB,
                     timeout=5_000)  # a 0.3 sine is about -13 dBFS
    summary = stop_call(qtbot, window)

    assert window.control.state is CallState.READY and summary.error is None
    assert summary.frames >= 12 and summary.step_p50_ms is not None
    with ConversationStore(tmp_path / "michi.sqlite3") as store:
        conversation = store.get(summary.conversation_id)
    assert conversation.duration_s == pytest.approx(summary.frames * FRAME_S)
    assert conversation.model == "tiny"
    assert window.export_conversation_action.isEnabled()
    wav, text = window.export_conversation(tmp_path / "export" / "call.wav")
    assert wav.stat().st_size > 44 and text.read_text().startswith(conversation.title)


def test_space_starts_and_stops_and_a_second_call_starts_fresh(qtbot, make_window):
    window = make_window()
    wait_ready(qtbot, window)
    window.start_stop_action.trigger()
    qtbot.wait_until(lambda: window.control.state is CallState.LIVE, timeout=10_000)
    with qtbot.wait_signal(window.call_ended, timeout=10_000):
        window.start_stop_action.trigger()
    window.start_stop_action.trigger()
    qtbot.wait_until(lambda: window.control.state is CallState.LIVE, timeout=10_000)
    qtbot.wait_until(lambda: window.latency_snapshot().frames >= 3, timeout=10_000)
    assert window.latency_snapshot().frames < 40, "the second call's counters start from zero"
    stop_call(qtbot, window)


def test_mute_makes_the_model_hear_silence(qtbot, make_window, tmp_path):
    window = make_window()
    start_call(qtbot, window, frames=5)
    qtbot.mouseClick(window.control.mute_button, Qt.MouseButton.LeftButton)
    assert window.control.muted and window.control.mute_button.text() == "Unmute mic"
    muted_from = window.latency_snapshot().frames + 2  # a frame in flight may still carry sound
    qtbot.wait_until(lambda: window.latency_snapshot().frames >= muted_from + 6, timeout=10_000)
    assert window.activity.text() == "Microphone muted"
    assert window.user_meter.level_db == FLOOR_DB, "the meter shows the mute"
    summary = stop_call(qtbot, window)
    with ConversationStore(tmp_path / "michi.sqlite3") as store:
        heard = store.get(summary.conversation_id).user_audio
    frame = 1920
    assert np.abs(heard[:4 * frame]).max() > 0.1, "before the mute the model heard the mic"
    assert not heard[muted_from * frame:].any(), "after the mute it heard nothing at all"


def test_a_model_that_fails_to_load_is_explained_and_the_app_stays_usable(qtbot, make_window, tmp_path):
    window = make_window(load_request=LoadRequest(checkpoint=str(tmp_path / "no-such-model")))
    with qtbot.wait_signal(window.model_failed, timeout=20_000):
        pass
    assert window.error_box is not None and window.error_box.isVisible()
    assert "is not a Michi checkpoint" in window.error_box.text() and "Settings" in window.error_box.text()
    assert window.control.state is CallState.NO_MODEL and not window.control.start_button.isEnabled()
    assert window.model_label.text() == "Model: not loaded"

    window.error_box.accept()
    checkpoint = tmp_path / "tiny-checkpoint"
    MichiModel(tiny()).save_pretrained(checkpoint)
    window.tabs.setCurrentWidget(window.settings_panel)
    window.settings_panel.checkpoint.setText(str(checkpoint))
    qtbot.mouseClick(window.settings_panel.apply_button, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert str(checkpoint) in window.model_label.text(), "the user's checkpoint replaced the failed one"


def test_a_device_that_refuses_the_format_is_explained(qtbot, make_window):
    window = make_window(FakeSoundDevice(fail_open="Invalid sample rate [PaErrorCode -9997]"))
    wait_ready(qtbot, window)
    with qtbot.wait_signal(window.call_ended, timeout=10_000):
        qtbot.mouseClick(window.control.start_button, Qt.MouseButton.LeftButton)
    assert window.error_box.isVisible()
    assert "Invalid sample rate" in window.error_box.text() and "Settings" in window.error_box.text()
    assert window.control.state is CallState.READY, "the user can pick another device and try again"


def test_a_device_that_disappears_mid_call_is_restarted_or_stopped_cleanly(qtbot, make_window):
    device = FakeSoundDevice(mic_source=tone(220.0))
    window = make_window(device)
    start_call(qtbot, window, frames=3)
    device.unplug()
    qtbot.wait_until(lambda: "restarted" in window.warning_label.text(), timeout=10_000)
    assert window.control.state is CallState.LIVE, "a device that comes back keeps the call going"

    device.fail_open = "Invalid device [PaErrorCode -9996]"
    device.unplug()
    qtbot.wait_until(lambda: window.control.state is CallState.READY, timeout=10_000)
    assert "stopped working" in window.error_box.text() and window.error_box.isVisible()
    assert window.last_summary.conversation_id is not None, "the call up to the failure is saved"
    assert all(stream.closed for stream in device.streams)


def test_closing_mid_call_returns_at_once_and_the_call_ends_cleanly(qtbot, make_window, tmp_path):
    device = FakeSoundDevice(mic_source=tone(220.0))
    window = make_window(device)
    start_call(qtbot, window, frames=5)
    started = time.perf_counter()
    window.close()
    assert time.perf_counter() - started < 0.5, "closing must never wait on the worker"
    qtbot.wait_until(lambda: not running_threads(), timeout=10_000)
    assert device.streams[-1].closed, "the audio stream is closed"
    with ConversationStore(tmp_path / "michi.sqlite3") as store:
        assert len(store.list()) == 1, "the call is saved even though the window closed"


def test_documents_and_voices_tabs_have_their_panels(qtbot, make_window):
    from app.widgets.documents_panel import DocumentsPanel

    window = make_window(load_request=None, load_on_start=False,
                         documents_panel_factory=default_documents_panel)
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert titles == ["Conversation", "Documents", "Voices", "Settings"]
    assert isinstance(window.documents_panel, DocumentsPanel)
    assert isinstance(window.voices_panel, VoicesPanel) and window.tabs.widget(2) is window.voices_panel
    window.close()
    qtbot.wait_until(lambda: not running_threads(), timeout=20_000)


def test_a_typed_message_joins_the_live_call_and_shows_as_typed(qtbot, make_window):
    window = make_window()
    wait_ready(qtbot, window)
    assert not window.send_button.isEnabled(), "no call, nothing to send to"
    start_call(qtbot, window, frames=3)
    assert window.send_button.isEnabled()
    qtbot.keyClicks(window.message_input, "What is on my calendar?")
    qtbot.keyClick(window.message_input, Qt.Key.Key_Return)
    assert window.message_input.text() == "", "sent: the box empties"
    qtbot.wait_until(lambda: any(t.typed for t in window.transcript_view.turns), timeout=10_000)
    [typed] = [t for t in window.transcript_view.turns if t.typed]
    assert typed.text == "What is on my calendar?"
    assert "typed" in window.transcript_view.toPlainText()
    stop_call(qtbot, window)


def test_a_source_link_opens_the_passage_where_it_sits(qtbot, make_window, tmp_path):
    window = make_window(load_request=None, load_on_start=False)
    document = tmp_path / "guide.pdf"
    document.write_bytes(b"%PDF-1.4")
    source = SourceRef(title="Guide", path=str(document), text="Turn the valve twice.", page=3,
                       char_start=120, char_end=141)
    window.transcript_view.set_turns([Turn(USER, "how do I open it", 0.0, 1.0, sources=(source,))])
    assert "Guide, p. 3" in window.transcript_view.toPlainText()
    with qtbot.wait_signal(window.transcript_view.source_clicked) as clicked:
        window.transcript_view.anchorClicked.emit(window.transcript_view.source_link(0, 0))
    assert clicked.args[0] == source
    dialog = window.source_dialog
    assert dialog.isVisible() and "Turn the valve twice." in dialog.findChild(QTextBrowser).toPlainText()
    url = window.source_url(source)
    assert url.isLocalFile() and url.toLocalFile() == str(document) and url.fragment() == "page=3"
    dialog.close()


def test_the_chosen_voice_is_remembered_and_given_to_the_next_call(qtbot, make_window, tmp_path):
    from michi_core.stores.voices import VoiceStore

    settings = QSettings(str(tmp_path / "voices.ini"), QSettings.Format.IniFormat)
    rate = 24000
    t = np.arange(3 * rate) / rate
    wave = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)
    with VoiceStore(tmp_path / "michi.sqlite3") as store:
        voice = store.add("Grace", wave, rate, transcript="hello there")
    window = make_window(settings=settings)
    wait_ready(qtbot, window)
    window.voices_panel.choose(voice.id)
    assert settings.value("voices/chosen", type=int) == voice.id
    start_call(qtbot, window, frames=2)
    assert window.worker.setup.voice_id == voice.id
    stop_call(qtbot, window)
    window.close()

    again = make_window(settings=QSettings(str(tmp_path / "voices.ini"), QSettings.Format.IniFormat),
                        load_request=None, load_on_start=False)
    assert again.voices_panel.chosen_voice_id == voice.id


def test_settings_and_overlay_persist_across_restarts(qtbot, make_window, tmp_path):
    path = str(tmp_path / "persist.ini")
    first = make_window(FakeSoundDevice(), load_request=None, load_on_start=False,
                        settings=QSettings(path, QSettings.Format.IniFormat))
    panel = first.settings_panel
    panel.output_device.setCurrentIndex(panel.output_device.findData("Michi virtual device"))
    panel.temperature.setValue(0.3)
    panel.eagerness.setValue(15)
    panel.headphones.setChecked(True)
    panel.system_prompt.setPlainText("Speak like a pirate.")
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    first.overlay_action.trigger()
    assert first.overlay.isVisible()
    assert "headphones" in first.device_label.text()
    first.close()

    second = make_window(FakeSoundDevice(), load_request=None, load_on_start=False,
                         settings=QSettings(path, QSettings.Format.IniFormat))
    prefs = second.settings_panel.preferences()
    edited = (prefs.output_device, prefs.temperature, prefs.eagerness, prefs.headphones, prefs.system_prompt)
    assert edited == ("Michi virtual device", 0.3, 1.5, True, "Speak like a pirate.")
    assert second.preferences == prefs
    assert second.overlay_action.isChecked() and second.overlay.isVisible()
