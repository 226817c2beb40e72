"""The Voices panel: the stored voices, a preview of each, and the choice of Michi's voice.

- Add a voice (record or import) through the enrollment dialog.
- Preview: the model says a sentence in the selected voice through the streaming engine
  (`michi_core.stores.voices.speak`), played through the injected audio; Michi's own voice is the
  first row, so the difference can be heard.
- Use: marks the voice and emits `voice_chosen(id or None)`; the main window applies it with
  `VoiceStore.prompt_for` + `DuplexSession.set_voice` at the next call (or live). The chosen
  voice is encoded for the current model right away, in the background, so that call starts
  without the wait.
- Rename in place, delete after a confirmation.

Preview and encoding run in `Job`s off the GUI thread, one at a time: both use the model, which
also means neither may run during a live call (`set_call_active`), when the inference thread
owns the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.threads import Job, run_job
from app.widgets.enrollment_dialog import EnrollmentDialog, Recorder
from michi_core.model.model import MichiModel
from michi_core.session.engine import SamplingSettings
from michi_core.stores.voices import VoiceError, VoiceStore, speak

log = logging.getLogger(__name__)

NAME, LENGTH, TRANSCRIPT = range(3)
VOICE_ID = Qt.ItemDataRole.UserRole  # on each row: the voice id, None for Michi's own voice
OWN_VOICE = "Michi's own voice"
PREVIEW_TEXT = "Hello! This is how I sound. What would you like to talk about today?"
PREVIEW_SEED = 0  # the same sentence sounds the same every time: voices compare fairly


class VoicesPanel(QWidget):
    voice_chosen = Signal(object)  # int voice id, or None for the model's own voice

    def __init__(self, audio_factory: Callable[[], Recorder], model: MichiModel | None = None,
                 store_path: Path | None = None, parent: QWidget | None = None):
        """`audio_factory` opens the audio device for a recording or a preview (with the devices
        chosen in Settings at that moment); `model` may come later with `set_model`."""
        super().__init__(parent)
        self.audio_factory = audio_factory
        self.model = model
        self.store_path = store_path
        self.store = VoiceStore(store_path)
        self.chosen_voice_id: int | None = None
        self.call_active = False
        self.dialog: EnrollmentDialog | None = None
        self.confirm_box: QMessageBox | None = None
        self._job: Job | None = None  # the preview or encoding under way
        self._player: Recorder | None = None  # open while a preview plays

        self.voices = QTreeWidget()
        self.voices.setHeaderLabels(["Voice", "Length", "What is said"])
        self.voices.setRootIsDecorated(False)
        self.voices.setEditTriggers(QTreeWidget.EditTrigger.NoEditTriggers)  # names: through Rename only
        self.voices.itemChanged.connect(self._on_item_changed)
        self.voices.itemSelectionChanged.connect(self._update_buttons)
        self.voices.itemDoubleClicked.connect(lambda item, column: self.use_selected())

        self.add_button = QPushButton("Add a voice…")
        self.add_button.clicked.connect(self.open_enrollment)
        self.preview_button = QPushButton("Preview")
        self.preview_button.clicked.connect(self.preview_selected)
        self.use_button = QPushButton("Use for Michi")
        self.use_button.clicked.connect(self.use_selected)
        self.rename_button = QPushButton("Rename")
        self.rename_button.clicked.connect(self._start_rename)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.confirm_delete)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.preview_button, self.use_button, self.rename_button,
                       self.delete_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.preview_text = QLineEdit(PREVIEW_TEXT)
        self.preview_text.setToolTip("The sentence a preview says")
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.voices, 1)
        layout.addWidget(QLabel("Preview sentence:"))
        layout.addWidget(self.preview_text)
        layout.addWidget(self.status)

        self._playback_timer = QTimer(self, interval=100)
        self._playback_timer.timeout.connect(self._poll_playback)
        self.reload()

    # -- the list ---------------------------------------------------------------------------------

    def reload(self) -> None:
        """Rebuild the rows from the store, keeping the selection."""
        selected = self.selected_voice_id()
        self.voices.blockSignals(True)
        self.voices.clear()
        own = QTreeWidgetItem([OWN_VOICE, "", ""])
        own.setData(NAME, VOICE_ID, None)
        self.voices.addTopLevelItem(own)
        for voice in self.store.voices():
            item = QTreeWidgetItem([voice.name, f"{voice.duration_s:.1f} s", voice.transcript])
            item.setData(NAME, VOICE_ID, voice.id)
            item.setToolTip(NAME, f"#{voice.id}, {voice.source}, added {voice.created_at[:10]}")
            item.setToolTip(TRANSCRIPT, voice.transcript)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.voices.addTopLevelItem(item)
        self._mark_chosen()
        self.voices.resizeColumnToContents(NAME)
        self.voices.resizeColumnToContents(LENGTH)
        self.voices.blockSignals(False)
        self.select(selected)
        self._update_buttons()

    def item_for(self, voice_id: int | None) -> QTreeWidgetItem | None:
        for row in range(self.voices.topLevelItemCount()):
            item = self.voices.topLevelItem(row)
            if item.data(NAME, VOICE_ID) == voice_id:
                return item
        return None

    def select(self, voice_id: int | None) -> None:
        item = self.item_for(voice_id) or self.voices.topLevelItem(0)
        self.voices.setCurrentItem(item)

    def selected_voice_id(self) -> int | None:
        item = self.voices.currentItem()
        return item.data(NAME, VOICE_ID) if item is not None else None

    def _mark_chosen(self) -> None:
        """The voice Michi speaks with is bold, with a check mark beside (not in) its editable name."""
        mark = self.style().standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton)
        for row in range(self.voices.topLevelItemCount()):
            item = self.voices.topLevelItem(row)
            chosen = item.data(NAME, VOICE_ID) == self.chosen_voice_id
            font = QFont(item.font(NAME))
            font.setBold(chosen)
            item.setFont(NAME, font)
            item.setIcon(NAME, mark if chosen else QIcon())
            item.setToolTip(LENGTH, "Michi speaks in this voice" if chosen else "")

    # -- choosing --------------------------------------------------------------------------------

    def set_chosen_voice(self, voice_id: int | None) -> None:
        """Show which voice Michi uses (e.g. restored from settings) without announcing a change.
        An id that is no longer stored falls back to Michi's own voice."""
        self.chosen_voice_id = voice_id if self.item_for(voice_id) is not None else None
        self.voices.blockSignals(True)
        self._mark_chosen()
        self.voices.blockSignals(False)

    def use_selected(self) -> None:
        self.choose(self.selected_voice_id())

    def choose(self, voice_id: int | None) -> None:
        """Make `voice_id` Michi's voice, tell the main window, and encode it for the model now."""
        self.set_chosen_voice(voice_id)
        self.voice_chosen.emit(self.chosen_voice_id)
        name = self.item_for(self.chosen_voice_id).text(NAME)
        self.status.setText(f"Michi will speak with {name} from the next call.")
        idle = self.model is not None and not self.call_active and self._job is None
        if self.chosen_voice_id is not None and idle:
            voice_id, model, store_path = self.chosen_voice_id, self.model, self.store_path

            def encode() -> None:
                with VoiceStore(store_path) as store:
                    store.prompt_for(voice_id, model)

            self._job = run_job(encode, "michi-voice-encode", self._on_encoded, self._on_job_failed)
            self._update_buttons()

    def _on_encoded(self, _result: object) -> None:
        self._job = None
        self._update_buttons()

    # -- preview ----------------------------------------------------------------------------------

    def preview_selected(self) -> None:
        """Synthesize the preview sentence in the selected voice, in the background, then play it."""
        if self.model is None or self.call_active or self._job is not None:
            return
        voice_id, model, store_path = self.selected_voice_id(), self.model, self.store_path
        text = self.preview_text.text().strip() or PREVIEW_TEXT

        def synthesize() -> np.ndarray:
            prompt = None
            if voice_id is not None:
                with VoiceStore(store_path) as store:
                    prompt = store.prompt_for(voice_id, model)
            return speak(model, text, prompt, SamplingSettings(seed=PREVIEW_SEED))

        self._stop_playback()
        self.status.setText(f"Preparing a preview of {self.item_for(voice_id).text(NAME)}…")
        self._job = run_job(synthesize, "michi-voice-preview", self._on_preview_ready, self._on_job_failed)
        self._update_buttons()

    def _on_preview_ready(self, wave: np.ndarray) -> None:
        self._job = None
        self._update_buttons()
        if self.call_active:  # a call started meanwhile: it owns the speaker
            self.status.setText("")
            return
        player = self.audio_factory()
        try:
            player.start()
        except RuntimeError as error:  # AudioDeviceError: no such device, or the format was refused
            self.status.setText(f"The audio device cannot be used: {error}")
            return
        self._player = player
        self._player.play(wave)
        self._playback_timer.start()
        self.status.setText("Playing the preview…")

    def _poll_playback(self) -> None:
        if self._player is not None and not self._player.keep_playing():
            self._stop_playback()
            self.status.setText("")

    def _stop_playback(self) -> None:
        self._playback_timer.stop()
        if self._player is not None:
            self._player.stop()
            self._player = None

    def _on_job_failed(self, message: str) -> None:
        self._job = None
        self.status.setText(f"That did not work: {message}")
        self._update_buttons()

    # -- adding, renaming, deleting ------------------------------------------------------------------

    def open_enrollment(self) -> EnrollmentDialog:
        """Open the enrollment dialog (not modal: the window stays usable); a saved voice is selected."""
        self._stop_playback()
        self.dialog = EnrollmentDialog(self.audio_factory(), self.store_path, parent=self)
        self.dialog.voice_saved.connect(self._on_voice_saved)
        self.dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialog.destroyed.connect(self._on_dialog_gone)
        self.dialog.open()
        return self.dialog

    def _on_dialog_gone(self) -> None:
        self.dialog = None

    def _on_voice_saved(self, voice_id: int) -> None:
        self.reload()
        self.select(voice_id)
        self.status.setText(f"Saved {self.item_for(voice_id).text(NAME)}. Preview it, or use it for Michi.")

    def _start_rename(self) -> None:
        item = self.voices.currentItem()
        if item is not None and item.data(NAME, VOICE_ID) is not None:
            self.voices.editItem(item, NAME)

    def rename(self, voice_id: int, name: str) -> bool:
        """Rename a stored voice; on a refused name the row keeps the old one and the status says why."""
        try:
            self.store.rename(voice_id, name)
        except VoiceError as error:
            self.status.setText(str(error))
            self.reload()
            return False
        self.reload()
        return True

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        voice_id = item.data(NAME, VOICE_ID)
        if column == NAME and voice_id is not None:
            name = item.text(NAME)
            QTimer.singleShot(0, lambda: self.rename(voice_id, name))  # not inside the editor's commit

    def confirm_delete(self) -> None:
        """Ask before deleting the selected voice (a recording cannot be undone)."""
        voice_id = self.selected_voice_id()
        if voice_id is None:
            return
        name = self.item_for(voice_id).text(NAME)
        standard = QMessageBox.StandardButton
        self.confirm_box = QMessageBox(QMessageBox.Icon.Question, "Delete voice",
                                       f"Delete the voice “{name}” and its recording?",
                                       standard.Yes | standard.Cancel, self)
        self.confirm_box.setDefaultButton(standard.Cancel)
        self.confirm_box.accepted.connect(lambda: self.delete(voice_id))
        self.confirm_box.open()

    def delete(self, voice_id: int) -> None:
        self.store.remove(voice_id)
        self.reload()
        if voice_id == self.chosen_voice_id:  # Michi cannot speak with a voice that is gone
            self.choose(None)

    # -- the app's state ------------------------------------------------------------------------------

    def set_model(self, model: MichiModel | None) -> None:
        """The model previews speak with (None while none is loaded)."""
        self.model = model
        self._update_buttons()

    def set_call_active(self, active: bool) -> None:
        """During a call the inference thread owns the model and the audio device: no previews,
        no recording; the voice can still be chosen (it applies at the next call)."""
        self.call_active = active
        if active:
            self._stop_playback()
        self._update_buttons()

    def _update_buttons(self) -> None:
        stored = self.selected_voice_id() is not None
        selected = self.voices.currentItem() is not None
        idle = self._job is None and not self.call_active
        self.preview_button.setEnabled(idle and self.model is not None and selected)
        self.preview_button.setToolTip("" if self.model is not None else "Available once the model is loaded")
        self.add_button.setEnabled(not self.call_active)
        self.use_button.setEnabled(selected)
        self.rename_button.setEnabled(stored)
        self.delete_button.setEnabled(stored)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop any preview and close the store; a running job finishes on its own thread."""
        self._stop_playback()
        self.store.close()
