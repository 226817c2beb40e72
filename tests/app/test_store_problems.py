"""The app when the user's data cannot be saved (damaged, read-only database) and when exporting
would replace files: it opens, says so, and never loses a call or a file without a word."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import end_every_call
from fake_sounddevice import FakeSoundDevice, tone
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QFileDialog, QLabel, QMessageBox

from app.main import warn_about_the_store
from app.main_window import MainWindow
from app.model_loader import LoadRequest
from app.widgets.conversation_control import CallState
from michi_core.stores import database
from michi_core.stores.conversations import ConversationStore, Turn


@pytest.fixture(autouse=True)
def every_call_ends(qtbot):
    yield
    end_every_call(qtbot)


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    monkeypatch.setattr(database, "_checked", {})  # each test is a fresh process's view


def window_on(qtbot, tmp_path, store_path: Path) -> MainWindow:
    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                        sounddevice_module=FakeSoundDevice(mic_source=tone(220.0)),
                        load_request=LoadRequest(preset_name="tiny"), store_path=store_path,
                        documents_panel_factory=lambda: QLabel("documents"))
    qtbot.addWidget(window)
    window.show()
    return window


def one_call(qtbot, window: MainWindow):
    qtbot.wait_until(lambda: window.control.state is CallState.READY, timeout=30_000)
    qtbot.mouseClick(window.control.start_button, Qt.MouseButton.LeftButton)
    qtbot.wait_until(lambda: window.latency_snapshot().frames >= 5, timeout=20_000)
    with qtbot.wait_signal(window.call_ended, timeout=10_000) as ended:
        qtbot.mouseClick(window.control.start_button, Qt.MouseButton.LeftButton)
    return ended.args[0]


def test_a_damaged_database_opens_the_app_says_so_and_a_failed_save_is_reported(qtbot, tmp_path):
    db = tmp_path / "michi.sqlite3"
    db.write_bytes(os.urandom(32 * 1024))
    before = db.read_bytes()
    window = window_on(qtbot, tmp_path, db)  # the panels open their stores: no crash
    warn_about_the_store(window)
    assert window.error_box is not None and "damaged" in window.error_box.text()
    window.error_box.close()

    summary = one_call(qtbot, window)
    assert summary.conversation_id is None and "damaged" in summary.save_error
    assert window.error_box.windowTitle() == "The conversation was not saved"
    assert db.read_bytes() == before, "the damaged file is never written"


def test_a_read_only_data_folder_opens_the_app_and_says_why_nothing_is_saved(qtbot, tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(database.os, "access",  # root ignores mode bits: what a user's check would see
                        lambda path, mode, **kw: False if mode & os.W_OK else real_access(path, mode, **kw))
    folder.chmod(0o500)
    try:
        window = window_on(qtbot, tmp_path, folder / "michi.sqlite3")
        warn_about_the_store(window)
        assert "read-only" in window.error_box.text()
        summary = one_call(qtbot, window)
        assert summary.conversation_id is None and "read-only" in summary.save_error
    finally:
        folder.chmod(0o700)


def saved_call(tmp_path) -> tuple[Path, int]:
    db = tmp_path / "michi.sqlite3"
    with ConversationStore(db) as store:
        conversation_id = store.save(started_at="a", ended_at="b", model="tiny", sample_rate=24_000,
                                     user_audio=np.zeros(1920, np.float32),
                                     assistant_audio=np.zeros(1920, np.float32),
                                     turns=[Turn("user", "hello there", 0.0, 0.08)])
    return db, conversation_id


def test_export_never_replaces_the_transcript_silently_and_adds_wav(tmp_path):
    db, conversation_id = saved_call(tmp_path)
    (tmp_path / "meeting.txt").write_text("my own notes")
    with ConversationStore(db) as store:
        with pytest.raises(FileExistsError, match=r"meeting\.txt"):
            store.export(conversation_id, tmp_path / "meeting.wav")
        assert (tmp_path / "meeting.txt").read_text() == "my own notes"
        assert not (tmp_path / "meeting.wav").exists()
        wav, text = store.export(conversation_id, tmp_path / "meeting.wav", overwrite=True)
        assert text.read_text().startswith("hello there")
        wav, text = store.export(conversation_id, tmp_path / "call")  # no .wav: it is added
        assert (wav.name, text.name) == ("call.wav", "call.txt") and wav.stat().st_size > 44


@pytest.mark.parametrize("answer", [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes])
def test_the_export_dialog_asks_before_replacing_either_file(qtbot, tmp_path, monkeypatch, answer):
    db, conversation_id = saved_call(tmp_path)
    window = window_on(qtbot, tmp_path, db)
    window.last_summary = type("Summary", (), {"conversation_id": conversation_id})()
    (tmp_path / "meeting.txt").write_text("my own notes")
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(tmp_path / "meeting.wav"), "WAV (*.wav)"))
    questions = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: questions.append(args[2]) or answer)
    window._choose_conversation_export()
    assert questions and "meeting.txt" in questions[0]
    replaced = (tmp_path / "meeting.txt").read_text() != "my own notes"
    assert replaced == (answer == QMessageBox.StandardButton.Yes)
