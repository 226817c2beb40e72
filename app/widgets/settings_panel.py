"""The Settings tab: audio devices, the model, sampling, the system prompt, headphones mode.

It edits a copy of the `Preferences` and hands them over on Apply; the main window persists
them and decides what they need (a model reload for a new checkpoint or compute device; the
rest takes effect at the next conversation). A device remembered by name but not plugged in
now stays listed, marked missing, rather than silently becoming "default".
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.settings import ComputeDevice, Preferences

SYSTEM_DEFAULT = "System default"
EAGERNESS_STEPS = 10  # slider ticks per unit of PAD bias
EAGERNESS_RANGE = 3.0  # ± PAD bias: beyond this the model either never speaks or never listens


class SettingsPanel(QWidget):
    applied = Signal(object)  # Preferences
    reload_model_requested = Signal()

    def __init__(self, preferences: Preferences, input_devices: list[str], output_devices: list[str],
                 cuda_available: bool, parent: QWidget | None = None):
        super().__init__(parent)
        self.input_device = QComboBox()
        self.output_device = QComboBox()
        self.headphones = QCheckBox("I am wearing headphones (turns the echo canceller off)")

        self.checkpoint = QLineEdit()
        self.checkpoint.setPlaceholderText("Embedded default model")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._choose_checkpoint)
        self.reload_button = QPushButton("Reload model")
        self.reload_button.clicked.connect(self.reload_model_requested)
        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(self.checkpoint, 1)
        checkpoint_row.addWidget(browse)
        self.compute_device = QComboBox()
        self.compute_device.addItem("CPU", ComputeDevice.CPU.value)
        self.compute_device.addItem("CUDA GPU" if cuda_available else "CUDA GPU (not available here)",
                                    ComputeDevice.CUDA.value)
        if not cuda_available:
            self.compute_device.model().item(1).setEnabled(False)

        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setToolTip("0 always picks the most likely word; higher is more varied")
        self.eagerness = QSlider(Qt.Orientation.Horizontal)
        ticks = int(EAGERNESS_RANGE * EAGERNESS_STEPS)
        self.eagerness.setRange(-ticks, ticks)
        self.eagerness_label = QLabel()
        self.eagerness.valueChanged.connect(self._show_eagerness)
        eagerness_row = QHBoxLayout()
        eagerness_row.addWidget(QLabel("patient"))
        eagerness_row.addWidget(self.eagerness, 1)
        eagerness_row.addWidget(QLabel("eager"))
        eagerness_row.addWidget(self.eagerness_label)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setFixedHeight(84)

        audio = QGroupBox("Audio")
        audio_form = QFormLayout(audio)
        audio_form.addRow("Microphone", self.input_device)
        audio_form.addRow("Speaker", self.output_device)
        audio_form.addRow("", self.headphones)
        model = QGroupBox("Model")
        model_form = QFormLayout(model)
        model_form.addRow("Checkpoint", checkpoint_row)
        model_form.addRow("Compute on", self.compute_device)
        reload_row = QHBoxLayout()
        reload_row.addWidget(self.reload_button)
        reload_row.addStretch(1)
        model_form.addRow("", reload_row)
        behaviour = QGroupBox("Conversation")
        behaviour_form = QFormLayout(behaviour)
        behaviour_form.addRow("Temperature", self.temperature)
        behaviour_form.addRow("Eagerness", eagerness_row)
        behaviour_form.addRow("System prompt", self.system_prompt)

        self.apply_button = QPushButton("Apply")
        self.apply_button.setDefault(True)
        self.apply_button.clicked.connect(lambda: self.applied.emit(self.preferences()))
        self.note = QLabel("Audio and conversation settings take effect at the next conversation.")
        self.note.setObjectName("hint")
        buttons = QHBoxLayout()
        buttons.addWidget(self.note, 1)
        buttons.addWidget(self.apply_button)

        content = QWidget()
        content.setMaximumWidth(820)  # long lines of form fields are hard to scan on a wide window
        column = QVBoxLayout(content)
        for group in (audio, model, behaviour):
            column.addWidget(group)
        column.addLayout(buttons)
        column.addStretch(1)
        centered = QWidget()
        centering = QHBoxLayout(centered)
        centering.addWidget(content)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(centered)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self._preferences = preferences
        self.set_devices(input_devices, output_devices)
        self.set_preferences(preferences)

    def set_devices(self, input_devices: list[str], output_devices: list[str]) -> None:
        """Refill the device lists, keeping the remembered choices (marked missing if unplugged)."""
        for combo, names, chosen in ((self.input_device, input_devices, self._preferences.input_device),
                                     (self.output_device, output_devices, self._preferences.output_device)):
            combo.clear()
            combo.addItem(SYSTEM_DEFAULT, "")
            for name in names:
                combo.addItem(name, name)
            if chosen and chosen not in names:
                combo.addItem(f"{chosen} (not connected)", chosen)
            combo.setCurrentIndex(max(0, combo.findData(chosen)))

    def set_preferences(self, preferences: Preferences) -> None:
        self._preferences = dataclasses.replace(preferences)
        for combo, chosen in ((self.input_device, preferences.input_device),
                              (self.output_device, preferences.output_device)):
            index = combo.findData(chosen)
            if index < 0:
                combo.addItem(f"{chosen} (not connected)", chosen)
                index = combo.count() - 1
            combo.setCurrentIndex(index)
        self.headphones.setChecked(preferences.headphones)
        self.checkpoint.setText(preferences.checkpoint)
        self.compute_device.setCurrentIndex(max(0, self.compute_device.findData(preferences.compute_device)))
        self.temperature.setValue(preferences.temperature)
        self.eagerness.setValue(round(preferences.eagerness * EAGERNESS_STEPS))
        self._show_eagerness(self.eagerness.value())
        self.system_prompt.setPlainText(preferences.system_prompt)

    def preferences(self) -> Preferences:
        """The preferences as edited (not yet applied)."""
        return Preferences(
            input_device=self.input_device.currentData() or "",
            output_device=self.output_device.currentData() or "",
            checkpoint=self.checkpoint.text().strip(),
            compute_device=ComputeDevice(self.compute_device.currentData()),
            temperature=round(self.temperature.value(), 3),
            eagerness=self.eagerness.value() / EAGERNESS_STEPS,
            system_prompt=self.system_prompt.toPlainText().strip(),
            headphones=self.headphones.isChecked(),
        )

    def _show_eagerness(self, value: int) -> None:
        self.eagerness_label.setText(f"{value / EAGERNESS_STEPS:+.1f}")

    def _choose_checkpoint(self) -> None:
        directory = QFileDialog.getExistingDirectory(self, "Choose a Michi checkpoint directory",
                                                     self.checkpoint.text())
        if directory:
            self.checkpoint.setText(directory)
