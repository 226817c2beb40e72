"""Building the audio side of a call from the preferences: the stream, the echo canceller, the VAD.

The sounddevice module is passed in (the real one, the self-test's file device, or a test's
fake), which is the only seam the app needs to run without a sound card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from app.audio.echo import HeadphonesBypass
from app.audio.stream import AudioIO, list_devices
from app.audio.vad import VoiceActivity
from app.audio_port import AudioPort, EchoCanceller, VoiceActivityDetector
from app.settings import Preferences

log = logging.getLogger(__name__)


@dataclass
class CallDevices:
    audio: AudioPort
    vad: VoiceActivityDetector
    echo_canceller: EchoCanceller
    notice: str | None = None  # something the user should know (e.g. no echo cancellation)


def device_names(sd: Any) -> tuple[list[str], list[str]]:
    """(microphones, speakers) by name, each name once, for the Settings lists."""
    inputs, outputs = list_devices(sd)
    return list(dict.fromkeys(d.name for d in inputs)), list(dict.fromkeys(d.name for d in outputs))


def open_call_devices(sd: Any, preferences: Preferences) -> CallDevices:
    """Everything audio a call needs (not started yet). Runs in the worker thread: loading the
    echo canceller's native library takes a moment."""
    audio = AudioIO(sd=sd, input_device=preferences.input_device or None,
                    output_device=preferences.output_device or None)
    notice = None
    if preferences.headphones:
        echo_canceller: EchoCanceller = HeadphonesBypass()
    else:
        try:
            from app.audio.echo import EchoCanceller as WebRtcEchoCanceller

            echo_canceller = WebRtcEchoCanceller()
        except ImportError as error:  # the packaged library is missing: talk on, but say so
            log.warning("echo cancellation unavailable: %s", error)
            echo_canceller = HeadphonesBypass()
            notice = ("Echo cancellation is unavailable on this installation: use headphones, or Michi "
                      "may hear itself.")
    return CallDevices(audio=audio, vad=VoiceActivity(), echo_canceller=echo_canceller, notice=notice)
