"""The shipped `small` checkpoint (assets/checkpoints/small) speaks: load_model() picks it by default
and Whisper hears the words of a sentence it never trained on."""

from __future__ import annotations

import pytest

from michi_core.model.model import CONFIG_FILE, DEFAULT_CHECKPOINT

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not (DEFAULT_CHECKPOINT / CONFIG_FILE).is_file(), reason="no model shipped")]

# A held-out sentence of the voice corpus (its test split: texts are hashed into splits, so the speak
# stage never trained on it).
SENTENCE = "honestly, i never have time to go running during the week."
MAX_WER = 0.3  # of its 11 words, Whisper base may miss or mishear three (the shipped model: 2 at seed 0)


def test_shipped_model_is_the_default_and_says_a_held_out_sentence():
    from michi_core.model.model import load_model
    from michi_core.session.engine import SamplingSettings
    from michi_core.stores.voices import speak
    from training.eval.asr import Transcriber, word_error_rate

    model = load_model()
    assert model.speech is not None, "the shipped checkpoint is the speech-stack model"
    audio = speak(model, SENTENCE, settings=SamplingSettings(seed=0))
    heard = Transcriber("base")(audio, model.config.codec.sample_rate)
    wer = word_error_rate([SENTENCE], [heard])
    assert wer <= MAX_WER, f"said {SENTENCE!r}, Whisper heard {heard!r} (WER {wer:.2f})"
