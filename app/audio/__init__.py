"""The audio layer: one duplex device stream, echo cancellation, voice activity. No Qt.

- `stream.AudioIO`: the sound card <-> 24 kHz model frames (rings, resampling, clocks, errors)
- `ring.FloatRing`: the lock-free hand-off between the audio callback and the worker
- `echo.EchoCanceller` / `echo.HeadphonesBypass`: the model must not hear itself
- `vad.VoiceActivity`: is the user speaking, and when did they stop
- `file_device.FileAudioDevice`: a WAV file as the mic, for `--self-test`
- `virtual_pulse.VirtualPulseAudio`: real PortAudio audio without a sound card (tests, benchmarks)
"""
