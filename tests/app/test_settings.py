"""Preferences: edited in the Settings tab, persisted in QSettings, back after a restart."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from app.settings import ComputeDevice, Preferences, load_preferences, open_settings, save_preferences
from app.widgets.settings_panel import SettingsPanel


def test_preferences_round_trip_through_an_ini_file(tmp_path):
    path = str(tmp_path / "prefs.ini")
    chosen = Preferences(input_device="USB Headset Mic", output_device="USB Headset", checkpoint="/models/x",
                         compute_device=ComputeDevice.CUDA, temperature=0.35, eagerness=-1.5,
                         system_prompt="Be brief.", headphones=True)
    save_preferences(QSettings(path, QSettings.Format.IniFormat), chosen)
    assert load_preferences(QSettings(path, QSettings.Format.IniFormat)) == chosen, (
        "INI files hand back strings: every field must come back with its own type"
    )


def test_an_edited_file_falls_back_to_defaults(tmp_path):
    path = tmp_path / "prefs.ini"
    path.write_text("[preferences]\ntemperature=warm\nheadphones=yes\ncompute_device=tpu\n")
    loaded = load_preferences(QSettings(str(path), QSettings.Format.IniFormat))
    assert loaded.temperature == Preferences().temperature
    assert loaded.headphones is True
    assert loaded.compute_device is ComputeDevice.CPU, "an unknown device falls back to the default"
    path.write_text("[preferences]\ncompute_device=cuda\n")  # as files written before the enum hold it
    loaded = load_preferences(QSettings(str(path), QSettings.Format.IniFormat))
    assert loaded.compute_device is ComputeDevice.CUDA


def test_open_settings_is_isolated_under_michi_home(michi_home):
    settings = open_settings()
    assert settings.fileName() == str(michi_home / "settings.ini"), (
        "tests must never touch the user's settings")


def test_panel_edits_come_out_as_preferences_and_missing_devices_stay_listed(qtbot):
    remembered = Preferences(input_device="Unplugged Headset", eagerness=0.5)
    panel = SettingsPanel(remembered, ["Built-in Mic"], ["Built-in Speakers"], cuda_available=False)
    qtbot.addWidget(panel)
    assert panel.input_device.currentText() == "Unplugged Headset (not connected)", (
        "a remembered device that is unplugged must stay chosen, not silently become the default"
    )
    assert not panel.compute_device.model().item(1).isEnabled(), "CUDA is not offered where there is none"

    panel.output_device.setCurrentIndex(panel.output_device.findData("Built-in Speakers"))
    panel.temperature.setValue(1.2)
    panel.eagerness.setValue(-20)
    panel.headphones.setChecked(True)
    panel.system_prompt.setPlainText("  Answer in French.  ")
    with qtbot.wait_signal(panel.applied) as applied:
        panel.apply_button.click()
    prefs = applied.args[0]
    assert prefs == Preferences(input_device="Unplugged Headset", output_device="Built-in Speakers",
                                temperature=1.2, eagerness=-2.0, system_prompt="Answer in French.",
                                headphones=True)
    sampling = prefs.sampling()
    assert sampling.pad_bias == 2.0 and sampling.text_temperature == 1.2, "patient = a positive PAD bias"
