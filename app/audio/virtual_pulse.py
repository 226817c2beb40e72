"""A private, user-space PulseAudio with a looped-back null sink: real audio without a sound card.

What the sink plays comes back on its monitor, the default source, so a duplex stream on
PortAudio's 'pulse' device hears itself through the real audio stack (PortAudio -> ALSA's
pulse plugin -> PulseAudio). The audio tests and the callback benchmark run on it; so can a
headless `--self-test`. Needs the Debian packages pulseaudio, pulseaudio-utils,
libasound2-plugins and libportaudio2 (`make system-deps`).

It follows the recipe measured on these machines: runtime dir of its own (XDG_RUNTIME_DIR),
a keep-alive stream into the sink (without it the first callback can come 0.4-2 s late), and
a throwaway stream run until callbacks flow, because a fresh daemon delays the first ~1.5 s.
The daemon and the keep-alive are stopped by pid, never by name.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from michi_core.model.config import CodecConfig

log = logging.getLogger(__name__)

SINK = "michi_sink"
DEVICE = "pulse"  # the PortAudio (ALSA) device that reaches the daemon


class VirtualPulseUnavailable(RuntimeError):
    """PulseAudio is not installed; the message says what to install."""


def pulseaudio_installed() -> bool:
    return shutil.which("pulseaudio") is not None and shutil.which("pactl") is not None


class VirtualPulseAudio:
    """Context manager: start the daemon, yield the PortAudio device name, stop it all."""

    def __init__(
        self, sample_rate: int = CodecConfig.sample_rate, runtime_dir: str | Path | None = None
    ) -> None:
        self.sample_rate = sample_rate
        self._runtime_arg = runtime_dir
        self._saved_env: dict[str, str | None] = {}
        self._daemon_pid: int | None = None
        self._keep_alive: subprocess.Popen | None = None
        self._owned_dir: str | None = None

    def __enter__(self) -> str:
        if not pulseaudio_installed():
            raise VirtualPulseUnavailable(
                "pulseaudio is not installed: `make system-deps`, or apt-get install pulseaudio "
                "pulseaudio-utils libasound2-plugins libportaudio2"
            )
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return DEVICE

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _start(self) -> None:
        if self._runtime_arg is None:
            self._owned_dir = tempfile.mkdtemp(prefix="michi-pulse-")
        runtime = Path(self._runtime_arg or self._owned_dir)
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        self._saved_env = {key: os.environ.get(key) for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        os.environ["PULSE_SERVER"] = f"unix:{runtime}/pulse/native"
        started = subprocess.run(
            ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n",
             "--load=module-native-protocol-unix",
             f"--load=module-null-sink sink_name={SINK} rate={self.sample_rate}",
             "--load=module-always-sink"],
            capture_output=True, text=True, timeout=30,
        )
        pid_file = runtime / "pulse" / "pid"
        if started.returncode != 0 or not pid_file.exists():
            raise RuntimeError(
                f"pulseaudio did not start (exit {started.returncode}): {started.stderr.strip()}"
            )
        self._daemon_pid = int(pid_file.read_text().split()[0])
        for command in (["pactl", "set-default-sink", SINK],
                        ["pactl", "set-default-source", f"{SINK}.monitor"]):
            subprocess.run(command, check=True, capture_output=True, timeout=10)
        with open("/dev/zero", "rb") as zeros:  # the child keeps its own copy of the descriptor
            self._keep_alive = subprocess.Popen(
                ["pacat", "--playback", f"--device={SINK}", "--latency-msec=20", f"--rate={self.sample_rate}",
                 "--channels=1", "--format=s16le"],
                stdin=zeros, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        import sounddevice as sd

        sd._terminate()  # PortAudio lists devices once, at initialisation: rescan now that the daemon runs
        sd._initialize()
        names = [d["name"] for d in sd.query_devices()]
        if DEVICE not in names:
            raise RuntimeError(f"PortAudio sees no {DEVICE!r} device (libasound2-plugins missing?): {names}")
        self._wait_until_streams_flow(sd)

    def _wait_until_streams_flow(self, sd: Any, timeout: float = 15.0) -> None:
        ready = threading.Event()
        calls = 0

        def callback(indata, outdata, frames, time_info, status):
            nonlocal calls
            outdata.fill(0)
            calls += 1
            if calls >= 5:
                ready.set()

        started = time.monotonic()
        with sd.Stream(device=(DEVICE, DEVICE), samplerate=self.sample_rate, blocksize=self.sample_rate // 50,
                       channels=1, dtype="float32", callback=callback):
            if not ready.wait(timeout):
                raise RuntimeError(f"the virtual PulseAudio device delivered no audio within {timeout:.0f} s")
        log.info("virtual PulseAudio device ready after %.2f s", time.monotonic() - started)

    def stop(self) -> None:
        """Stop the keep-alive and the daemon (by pid) and restore the environment. Idempotent."""
        keep_alive, self._keep_alive = self._keep_alive, None
        if keep_alive is not None:
            keep_alive.terminate()
            keep_alive.wait(timeout=10)
        pid, self._daemon_pid = self._daemon_pid, None
        if pid is not None:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        owned, self._owned_dir = self._owned_dir, None
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
