"""The main window: the conversation (Start/Stop, mute, meters, transcript), the Documents,
Voices and Settings tabs, the status line and the latency overlay.

Everything slow happens in workers (app/model_loader.py, app/worker.py) and this window only
reacts to their signals and polls the live call with a ~30 Hz timer. Closing it mid-call asks
the worker to stop and returns at once; the worker saves the conversation and ends its thread
by itself.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.call_devices import device_names, open_call_devices
from app.latency import LatencySnapshot
from app.model_loader import LoadedModel, LoadFunction, LoadRequest, ModelLoader
from app.settings import Preferences, SettingsKey, load_preferences, open_settings, save_preferences
from app.theme import ASSISTANT_COLOR, USER_COLOR
from app.threads import start_in_thread
from app.widgets.conversation_control import CallState, ConversationControl
from app.widgets.latency_overlay import LatencyOverlay
from app.widgets.level_meter import LevelMeter
from app.widgets.settings_panel import SettingsPanel
from app.widgets.transcript_view import TranscriptView
from app.widgets.voices_panel import VoicesPanel
from app.worker import CallSetup, CallSummary, InferenceWorker, LiveUpdate
from michi_core.model.model import MichiModel, load_model
from michi_core.session.hearing import HearingSettings
from michi_core.stores.conversations import ConversationStore, SourceRef
from michi_core.stores.database import StoreError

log = logging.getLogger(__name__)

POLL_INTERVAL_MS = 33  # ~30 Hz: smooth meters without a signal per audio frame
OVERLAY_MARGIN = 12


def default_documents_panel() -> QWidget:
    """The Documents tab: the RAG panel, on Michi's database and the shared embedder."""
    from app.widgets.documents_panel import DocumentsPanel
    from michi_core.stores.rag import default_embedder

    return DocumentsPanel(None, default_embedder())


def open_documents_for_call(store_path: Path | None, model: MichiModel):
    """The live call's retrieval over the user's documents (runs in the inference thread)."""
    from michi_core.stores.rag import call_injector

    return call_injector(lambda text: len(model.tokenizer.encode(text)), model.config.backbone.max_positions,
                         store_path)


class MainWindow(QMainWindow):
    model_ready = Signal()  # a model finished loading (tests and the self-test wait on these)
    model_failed = Signal(str)
    call_ended = Signal(object)  # CallSummary

    def __init__(self, *, settings: QSettings | None = None, sounddevice_module=None,
                 load_request: LoadRequest | None = None, load_function: LoadFunction = load_model,
                 documents_panel_factory: Callable[[], QWidget] = default_documents_panel,
                 store_path: Path | None = None, load_on_start: bool = True):
        super().__init__()
        self.setWindowTitle("Michi")
        self.settings = settings if settings is not None else open_settings()
        self.preferences = load_preferences(self.settings)
        self._sounddevice = sounddevice_module
        self._load_override = load_request  # a --preset / --checkpoint given on the command line
        self._load_function = load_function
        self.store_path = store_path
        self.loaded_model: LoadedModel | None = None
        self.worker: InferenceWorker | None = None
        self.last_summary: CallSummary | None = None
        self.error_box: QMessageBox | None = None
        self.progress_dialog: QProgressDialog | None = None
        self._loader: ModelLoader | None = None
        self._reload_after_call = False  # the model changed in Settings during a call

        self._build_conversation_tab()
        self.settings_panel = SettingsPanel(self.preferences, *self._device_lists(),
                                            cuda_available=_cuda_available())
        self.settings_panel.applied.connect(self.apply_preferences)
        self.settings_panel.reload_model_requested.connect(self.load_model)
        self.documents_panel = documents_panel_factory()
        self.voices_panel = VoicesPanel(self._open_recorder, None, store_path)
        self.voices_panel.set_chosen_voice(self.settings.value(SettingsKey.CHOSEN_VOICE, None, type=int))
        self.voices_panel.voice_chosen.connect(self.choose_voice)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.conversation_tab, "Conversation")
        self.tabs.addTab(self.documents_panel, "Documents")
        self.tabs.addTab(self.voices_panel, "Voices")
        self.tabs.addTab(self.settings_panel, "Settings")
        self.setCentralWidget(self.tabs)

        self.overlay = LatencyOverlay(self.tabs)
        self.overlay.hide()
        self._build_status_bar()
        self._build_menus()

        self.poll_timer = QTimer(self, interval=POLL_INTERVAL_MS)
        self.poll_timer.timeout.connect(self.poll)
        self.poll_timer.start()

        self.resize(1040, 700)
        geometry = self.settings.value(SettingsKey.WINDOW_GEOMETRY)
        if geometry is not None:
            self.restoreGeometry(geometry)
        self._set_state(CallState.NO_MODEL)
        if load_on_start:
            QTimer.singleShot(0, self.load_model)  # after show(): the dialog needs a visible parent

    # -- layout -----------------------------------------------------------------------------------
    def _build_conversation_tab(self) -> None:
        self.control = ConversationControl()
        self.control.start_requested.connect(self.start_conversation)
        self.control.stop_requested.connect(self.stop_conversation)
        self.control.mute_toggled.connect(self.set_muted)
        self.user_meter = LevelMeter("You", USER_COLOR)
        self.assistant_meter = LevelMeter("Michi", ASSISTANT_COLOR)
        self.activity = QLabel("")
        self.activity.setObjectName("hint")
        self.activity.setAlignment(Qt.AlignmentFlag.AlignCenter)

        sidebar = QWidget()
        sidebar.setMinimumWidth(250)
        sidebar.setMaximumWidth(320)
        column = QVBoxLayout(sidebar)
        column.setContentsMargins(16, 24, 16, 16)
        column.addStretch(1)
        column.addWidget(self.control)
        column.addSpacing(18)
        column.addWidget(self.user_meter)
        column.addWidget(self.assistant_meter)
        column.addWidget(self.activity)
        column.addStretch(2)

        self.transcript_view = TranscriptView()
        self.transcript_view.source_clicked.connect(self.show_source)
        self.message_input = QLineEdit()
        self.message_input.setPlaceholderText("Type a message into the call (Enter to send)…")
        self.message_input.returnPressed.connect(self.send_message)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self.send_message)
        typing = QHBoxLayout()
        typing.setContentsMargins(0, 6, 0, 0)
        typing.addWidget(self.message_input, 1)
        typing.addWidget(self.send_button)
        talk = QWidget()
        talk_column = QVBoxLayout(talk)
        talk_column.setContentsMargins(0, 0, 0, 0)
        talk_column.addWidget(self.transcript_view, 1)
        talk_column.addLayout(typing)
        splitter = QSplitter()
        splitter.addWidget(sidebar)
        splitter.addWidget(talk)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        self.conversation_tab = QWidget()
        layout = QHBoxLayout(self.conversation_tab)
        layout.setContentsMargins(0, 0, 8, 8)
        layout.addWidget(splitter)

    def _build_status_bar(self) -> None:
        self.model_label = QLabel()
        self.device_label = QLabel()
        self.state_label = QLabel()
        self.warning_label = QLabel()
        self.warning_label.setObjectName("warning")
        bar = self.statusBar()
        bar.addWidget(self.state_label)
        bar.addWidget(self.warning_label, 1)
        bar.addPermanentWidget(self.model_label)
        bar.addPermanentWidget(self.device_label)
        self._show_model_status()
        self._show_device_status()

    def _build_menus(self) -> None:
        conversation = self.menuBar().addMenu("&Conversation")
        self.start_stop_action = QAction("Start / stop", self, shortcut=QKeySequence(Qt.Key.Key_Space))
        self.start_stop_action.triggered.connect(self.toggle_conversation)
        conversation.addAction(self.start_stop_action)
        self.export_conversation_action = QAction("Export last conversation (WAV + text)…", self)
        self.export_conversation_action.setEnabled(False)
        self.export_conversation_action.triggered.connect(self._choose_conversation_export)
        conversation.addAction(self.export_conversation_action)
        conversation.addSeparator()
        quit_action = QAction("Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        conversation.addAction(quit_action)

        view = self.menuBar().addMenu("&View")
        self.overlay_action = QAction("Latency overlay", self, checkable=True,
                                      shortcut=QKeySequence("Ctrl+L"))
        self.overlay_action.toggled.connect(self.set_overlay_visible)
        view.addAction(self.overlay_action)
        export_csv = QAction("Export latency as CSV…", self)
        export_csv.triggered.connect(lambda: self._choose_latency_export("csv"))
        export_json = QAction("Export latency as JSON…", self)
        export_json.triggered.connect(lambda: self._choose_latency_export("json"))
        view.addAction(export_csv)
        view.addAction(export_json)
        self.overlay_action.setChecked(self.settings.value(SettingsKey.OVERLAY_SHOWN, False, type=bool))

    # -- the model --------------------------------------------------------------------------------
    def load_request(self) -> LoadRequest:
        if self._load_override is not None:
            return dataclasses.replace(self._load_override, compute_device=self.preferences.compute_device)
        return LoadRequest(checkpoint=self.preferences.checkpoint or None,
                           compute_device=self.preferences.compute_device)

    def load_model(self) -> None:
        """Load (or reload) the model in a worker thread, with a progress dialog meanwhile."""
        if self._loader is not None:
            return
        if self.control.state in (CallState.STARTING, CallState.LIVE, CallState.STOPPING):
            self._reload_after_call = True  # never pull the model from under a live call
            self.statusBar().showMessage("The model will reload when this conversation ends", 8000)
            return
        request = self.load_request()
        self.loaded_model = None
        self.voices_panel.set_model(None)
        self._set_state(CallState.LOADING)
        self.model_label.setText(f"Model: loading {request.describe()}…")
        self.progress_dialog = QProgressDialog("Loading the model…", "", 0, 0, self)
        self.progress_dialog.setWindowTitle("Michi")
        self.progress_dialog.setCancelButton(None)  # loading weights cannot be interrupted halfway
        self.progress_dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.progress_dialog.setMinimumDuration(300)  # a tiny model loads without a flash
        self.progress_dialog.setValue(0)
        self._loader = ModelLoader(request, self._load_function)
        self._loader.progress.connect(self.progress_dialog.setLabelText)
        self._loader.loaded.connect(self._on_model_loaded)
        self._loader.failed.connect(self._on_model_failed)
        start_in_thread(self._loader, self._loader.start, "michi-model-loader")

    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        self._loader = None
        self._close_progress()
        self.loaded_model = loaded
        self._show_model_status()
        self._set_state(CallState.READY)
        self.voices_panel.set_model(loaded.model)
        self.statusBar().showMessage(f"Model ready in {loaded.seconds:.1f} s", 5000)
        self.model_ready.emit()

    def _on_model_failed(self, message: str) -> None:
        self._loader = None
        self._close_progress()
        self._show_model_status(failed=True)
        self._set_state(CallState.NO_MODEL)
        self.show_error("The model could not be loaded",
                        f"{message}\n\nChoose another checkpoint or compute device in Settings, then "
                        "click Reload model.")
        self.model_failed.emit(message)

    def _close_progress(self) -> None:
        if self.progress_dialog is not None:
            self.progress_dialog.reset()
            self.progress_dialog.deleteLater()
            self.progress_dialog = None

    # -- the call ---------------------------------------------------------------------------------
    def toggle_conversation(self) -> None:
        if self.control.state is CallState.READY:
            self.start_conversation()
        elif self.control.state is CallState.LIVE:
            self.stop_conversation()

    def start_conversation(self) -> None:
        if self.control.state is not CallState.READY or self.loaded_model is None:
            return
        try:
            sounddevice = self._sounddevice_module()
        except Exception as error:  # noqa: BLE001 — no PortAudio library: say so, stay usable
            log.exception("sounddevice is unavailable")
            self.show_error("No audio system", f"Audio devices cannot be used on this computer: {error}")
            return
        loaded, preferences = self.loaded_model, self.preferences
        setup = CallSetup(model=loaded.model, model_name=loaded.name,
                          open_devices=functools.partial(open_call_devices, sounddevice, preferences),
                          sampling=preferences.sampling(), system_prompt=preferences.system_prompt,
                          compute_device=loaded.compute_device, store_path=self.store_path,
                          voice_id=self.voices_panel.chosen_voice_id,
                          open_context=functools.partial(open_documents_for_call, self.store_path),
                          hearing=HearingSettings(device="cuda" if loaded.compute_device.startswith("cuda")
                                                  else "cpu"))
        self.worker = InferenceWorker(setup)
        self.worker.set_muted(self.control.muted)
        self.worker.call_started.connect(self._on_call_started)
        self.worker.call_ended.connect(self._on_call_ended)
        self.worker.error.connect(lambda message: self.show_error("The conversation stopped", message))
        self.worker.warning.connect(self.warning_label.setText)
        self.transcript_view.clear_turns()
        self.warning_label.clear()
        self.voices_panel.set_call_active(True)
        self._set_state(CallState.STARTING)
        start_in_thread(self.worker, self.worker.start, "michi-inference")

    def stop_conversation(self) -> None:
        if self.worker is not None and self.control.state in (CallState.STARTING, CallState.LIVE):
            self._set_state(CallState.STOPPING)
            self.worker.stop()

    def set_muted(self, muted: bool) -> None:
        if self.worker is not None:
            self.worker.set_muted(muted)
        if muted:
            self.user_meter.reset()

    def _on_call_started(self, device_name: str) -> None:
        if self.control.state is CallState.STARTING:
            self._set_state(CallState.LIVE)
        self._show_device_status(device_name)

    def _on_call_ended(self, summary: CallSummary) -> None:
        self.worker = None
        self.voices_panel.set_call_active(False)
        if summary.final is not None:
            self._show(summary.final)  # the last words heard
        self.last_summary = summary
        self.user_meter.reset()
        self.assistant_meter.reset()
        self.activity.clear()
        self._set_state(CallState.READY if self.loaded_model is not None else CallState.NO_MODEL)
        if summary.conversation_id is not None:
            self.export_conversation_action.setEnabled(True)
            self.statusBar().showMessage("Conversation saved: Conversation > Export to keep a copy", 8000)
        if summary.save_error:
            self.show_error("The conversation was not saved", summary.save_error)
        if self._reload_after_call:
            self._reload_after_call = False
            self.load_model()
        self.call_ended.emit(summary)

    def poll(self) -> None:
        """The GUI's only view of the live call, ~30 times a second."""
        worker = self.worker
        update = worker.snapshot() if worker is not None else None
        if update is not None:
            self._show(update)

    def _show(self, update: LiveUpdate) -> None:
        self.user_meter.set_level(update.mic_level)
        self.assistant_meter.set_level(update.output_level)
        self.transcript_view.set_turns(update.turns)
        if self.overlay.isVisible():
            self.overlay.set_snapshot(update.latency)
        else:
            self.overlay.snapshot = update.latency  # kept current for export, painted when shown
        if self.control.muted:
            self.activity.setText("Microphone muted")
        elif update.user_speaking:
            self.activity.setText("You are speaking")
        elif update.assistant_speaking:
            self.activity.setText("Michi is speaking")
        else:
            self.activity.setText("Listening")
        self.warning_label.setText(update.warning or "")

    # -- typed messages, sources, voices ------------------------------------------------------------
    def send_message(self) -> None:
        """Send the typed text into the live call (it joins the model's context before the next frame)."""
        text = self.message_input.text().strip()
        if not text:
            return
        if self.worker is None or self.control.state is not CallState.LIVE or not self.worker.send_text(text):
            self.statusBar().showMessage("Start a conversation to send a message", 5000)
            return
        self.message_input.clear()

    def show_source(self, source: SourceRef) -> QDialog:
        """The passage a turn was answered from, where it sits in its document, and a way to open it."""
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Source: {source.label}")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        where = f"page {source.page}" if source.page else f"characters {source.char_start}–{source.char_end}"
        header = QLabel(f"<b>{source.title}</b><br/><span style='color:#8a8f98'>{source.path} · {where}</span>")
        header.setWordWrap(True)
        passage = QTextBrowser()
        passage.setPlainText(source.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        open_button = buttons.addButton("Open the document", QDialogButtonBox.ButtonRole.ActionRole)
        open_button.setEnabled(Path(source.path).exists())
        open_button.clicked.connect(lambda: self.open_source_file(source))
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(header)
        layout.addWidget(passage, 1)
        layout.addWidget(buttons)
        dialog.resize(560, 360)
        dialog.open()
        self.source_dialog = dialog
        return dialog

    @staticmethod
    def source_url(source: SourceRef) -> QUrl:
        url = QUrl.fromLocalFile(source.path)
        if source.page:
            url.setFragment(f"page={source.page}")  # PDF viewers (and browsers) open at that page
        return url

    def open_source_file(self, source: SourceRef) -> None:
        if not QDesktopServices.openUrl(self.source_url(source)):
            self.statusBar().showMessage(f"No application could open {source.path}", 6000)

    def choose_voice(self, voice_id: int | None) -> None:
        """The Voices panel chose Michi's voice: remember it; a live call switches at once."""
        if voice_id is None:
            self.settings.remove(SettingsKey.CHOSEN_VOICE)
        else:
            self.settings.setValue(SettingsKey.CHOSEN_VOICE, voice_id)
        if voice_id is not None and self.worker is not None and self.control.state is CallState.LIVE:
            if self.worker.set_voice(voice_id):
                self.statusBar().showMessage("Michi switches to the new voice now", 5000)

    def _open_recorder(self):
        """An audio device for enrollment and previews, with the devices chosen in Settings."""
        from app.audio.stream import AudioIO
        from app.widgets.enrollment_dialog import AudioPortRecorder

        prefs = self.preferences
        return AudioPortRecorder(AudioIO(sd=self._sounddevice_module(), input_device=prefs.input_device or None,
                                         output_device=prefs.output_device or None))

    # -- preferences --------------------------------------------------------------------------------
    def apply_preferences(self, preferences: Preferences) -> None:
        previous, self.preferences = self.preferences, preferences
        save_preferences(self.settings, preferences)
        self.settings_panel.set_preferences(preferences)
        self._show_device_status()
        checkpoint_changed = previous.checkpoint != preferences.checkpoint
        if checkpoint_changed:
            self._load_override = None  # the user's choice now outranks a --preset/--checkpoint
        if checkpoint_changed or previous.compute_device != preferences.compute_device:
            self.load_model()
        self.statusBar().showMessage("Settings saved", 4000)

    def _device_lists(self) -> tuple[list[str], list[str]]:
        try:
            return device_names(self._sounddevice_module())
        except Exception as error:  # noqa: BLE001 — no PortAudio: the lists stay empty, the rest works
            log.warning("cannot list audio devices: %s", error)
            return [], []

    def _sounddevice_module(self):
        if self._sounddevice is None:
            import sounddevice

            self._sounddevice = sounddevice
        return self._sounddevice

    # -- the overlay and exports ------------------------------------------------------------------
    def set_overlay_visible(self, visible: bool) -> None:
        self.overlay.setVisible(visible)
        if visible:
            self._place_overlay()
            self.overlay.raise_()
        if self.overlay_action.isChecked() != visible:
            self.overlay_action.setChecked(visible)

    def _place_overlay(self) -> None:
        self.overlay.move(self.tabs.width() - self.overlay.width() - OVERLAY_MARGIN,
                          self.tabs.tabBar().height() + OVERLAY_MARGIN)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._place_overlay()

    def latency_snapshot(self) -> LatencySnapshot:
        return self.overlay.snapshot

    def export_latency(self, path: str | Path) -> Path:
        path = Path(path)
        snapshot = self.latency_snapshot()
        text = snapshot.to_json() if path.suffix.lower() == ".json" else snapshot.to_csv()
        path.write_text(text, encoding="utf-8")
        return path

    def _choose_latency_export(self, kind: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export latency", f"michi-latency.{kind}",
                                              f"{kind.upper()} (*.{kind})")
        if path:
            self.statusBar().showMessage(f"Wrote {self.export_latency(path)}", 5000)

    def export_conversation(self, wav_path: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
        """Write the last conversation (see ConversationStore.export); FileExistsError when a file
        would be replaced and `overwrite` is False."""
        assert self.last_summary is not None and self.last_summary.conversation_id is not None
        with ConversationStore(self.store_path) as store:
            return store.export(self.last_summary.conversation_id, wav_path, overwrite=overwrite)

    def _choose_conversation_export(self) -> None:
        # The native dialog asks before replacing the .wav only; the .txt beside it is asked about
        # here (DontConfirmOverwrite: one question for both files).
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation", "michi-conversation.wav",
                                              "WAV (*.wav)", options=QFileDialog.Option.DontConfirmOverwrite)
        if not path:
            return
        try:
            try:
                wav, text = self.export_conversation(path)
            except FileExistsError as existing:
                answer = QMessageBox.question(
                    self, "Replace files?", f"{existing}\nReplace them?",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
                if answer != QMessageBox.StandardButton.Yes:
                    return
                wav, text = self.export_conversation(path, overwrite=True)
        except (OSError, ValueError, StoreError) as error:
            self.show_error("The conversation could not be exported", str(error))
            return
        self.statusBar().showMessage(f"Wrote {wav} and {text.name}", 5000)

    # -- status -----------------------------------------------------------------------------------
    def _set_state(self, state: CallState) -> None:
        self.control.set_state(state)
        self.send_button.setEnabled(state is CallState.LIVE)
        self.state_label.setText(f"● {state.value.capitalize()}")

    def _show_model_status(self, failed: bool = False) -> None:
        if self.loaded_model is not None:
            loaded = self.loaded_model
            self.model_label.setText(f"Model: {loaded.name} · {loaded.compute_device}")
        else:
            loading = self._loader is not None and not failed
            self.model_label.setText("Model: loading…" if loading else "Model: not loaded")

    def _show_device_status(self, device_name: str | None = None) -> None:
        if device_name:
            self.device_label.setText(f"Audio: {device_name}")
            return
        prefs = self.preferences
        self.device_label.setText(f"Audio: {prefs.input_device or 'default mic'} → "
                                  f"{prefs.output_device or 'default speaker'}"
                                  + (" · headphones" if prefs.headphones else ""))

    def show_error(self, title: str, message: str) -> None:
        """A clear message that does not block the event loop (the call, the loader keep going)."""
        log.error("%s: %s", title, message)
        if self.error_box is not None:
            self.error_box.close()
        self.error_box = QMessageBox(QMessageBox.Icon.Warning, title, message,
                                     QMessageBox.StandardButton.Ok, self)
        self.error_box.open()

    # -- closing ----------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        """Never waits: a live call is asked to stop (its worker saves it and ends by itself)."""
        self.poll_timer.stop()
        if self.worker is not None:
            self.worker.stop()
        for panel in (self.documents_panel, self.voices_panel):
            shutdown = getattr(panel, "shutdown", None)
            if shutdown is not None:
                shutdown()
        self.settings.setValue(SettingsKey.WINDOW_GEOMETRY, self.saveGeometry())
        self.settings.setValue(SettingsKey.OVERLAY_SHOWN, self.overlay_action.isChecked())
        self.settings.sync()
        super().closeEvent(event)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
