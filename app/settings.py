"""User preferences: what the Settings tab edits, kept in QSettings between runs.

Devices are remembered by *name*, not index: PortAudio renumbers devices whenever one is plugged
in or out, while the name of a headset stays the same. Under $MICHI_HOME (tests, portable
installs) the preferences live in an INI file there, so nothing leaks into the user's real
settings; otherwise in the platform's native place.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings

from michi_core.session.engine import SamplingSettings

ORGANIZATION, APPLICATION = "Michi", "Michi"
DEFAULT_SYSTEM_PROMPT = "You are Michi, a friendly voice assistant. Keep your answers short and natural."


@dataclass
class Preferences:
    input_device: str = ""  # device name; "" = the system default
    output_device: str = ""
    checkpoint: str = ""  # a checkpoint directory; "" = the embedded default model
    compute_device: str = "cpu"  # "cpu" or "cuda"
    temperature: float = 0.7  # of the model's text stream; 0 = greedy
    eagerness: float = 0.0  # minus the PAD bias: > 0 speaks up sooner, < 0 waits longer
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    headphones: bool = False  # no echo to cancel: the echo canceller is bypassed

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
        raw = settings.value(f"preferences/{spec.name}", default)
        values[spec.name] = _coerce(raw, default)
    return Preferences(**values)


def save_preferences(settings: QSettings, preferences: Preferences) -> None:
    for name, value in dataclasses.asdict(preferences).items():
        settings.setValue(f"preferences/{name}", value)
    settings.sync()


def _coerce(raw, default):
    """INI files give strings back ("true", "0.7"): turn them into the field's own type."""
    try:
        if isinstance(default, bool):
            return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("true", "1", "yes")
        if isinstance(default, float):
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        return default
