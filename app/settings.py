"""User preferences: what the Settings tab edits, kept in QSettings between runs.

Devices are remembered by *name*, not index: PortAudio renumbers devices whenever one is plugged
in or out, while the name of a headset stays the same. Under $MICHI_HOME (tests, portable
installs) the preferences live in an INI file there, so nothing leaks into the user's real
settings; otherwise in the platform's native place.

Keys and modes are enums (`SettingsKey`, `ComputeDevice`), str-valued so the stored files hold
plain strings and files written before keep reading.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from PySide6.QtCore import QSettings

from michi_core.session.engine import SamplingSettings

ORGANIZATION, APPLICATION = "Michi", "Michi"
DEFAULT_SYSTEM_PROMPT = "You are Michi, a friendly voice assistant. Keep your answers short and natural."
PREFERENCES_GROUP = "preferences"  # each Preferences field is stored as preferences/<field>


class SettingsKey(StrEnum):
    """Every key kept outside the preferences group: a typo is an AttributeError, not a setting
    silently written under one name and read under another."""

    CHOSEN_VOICE = "voices/chosen"  # the id of the voice Michi speaks with
    WINDOW_GEOMETRY = "window/geometry"
    OVERLAY_SHOWN = "window/overlay"  # the latency overlay


class ComputeDevice(StrEnum):
    """Where the model runs."""

    CPU = "cpu"
    CUDA = "cuda"


@dataclass
class Preferences:
    input_device: str = ""  # device name; "" = the system default
    output_device: str = ""
    checkpoint: str = ""  # a checkpoint directory; "" = the embedded default model
    compute_device: ComputeDevice = ComputeDevice.CPU
    temperature: float = 0.7  # of the model's text stream; 0 = greedy
    eagerness: float = 0.0  # minus the PAD bias: > 0 speaks up sooner, < 0 waits longer
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    headphones: bool = False  # no echo to cancel: the echo canceller is bypassed

    def __post_init__(self) -> None:
        self.compute_device = ComputeDevice(self.compute_device)  # "cuda" given as a string: the member

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(text_temperature=self.temperature, pad_bias=-self.eagerness)


def open_settings() -> QSettings:
    """The QSettings every part of the app shares (see the module docstring for where)."""
    home = os.environ.get("MICHI_HOME")
    if home:
        return QSettings(str(Path(home) / "settings.ini"), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def load_preferences(settings: QSettings) -> Preferences:
    """Read every field, falling back to its default when missing or unreadable (an edited file)."""
    defaults = Preferences()
    values = {}
    for spec in dataclasses.fields(Preferences):
        default = getattr(defaults, spec.name)
        raw = settings.value(f"{PREFERENCES_GROUP}/{spec.name}", default)
        values[spec.name] = _coerce(raw, default)
    return Preferences(**values)


def save_preferences(settings: QSettings, preferences: Preferences) -> None:
    for name, value in dataclasses.asdict(preferences).items():
        settings.setValue(f"{PREFERENCES_GROUP}/{name}", value)
    settings.sync()


def _coerce(raw, default):
    """INI files give strings back ("true", "0.7"): turn them into the field's own type."""
    try:
        if isinstance(default, bool):
            return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("true", "1", "yes")
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, StrEnum):
            return type(default)(str(raw))
        return str(raw)
    except (TypeError, ValueError):
        return default
