"""A model with a speech stack in the streaming engine: it feeds the stack and the backbone exactly
what the speak stage trained on, and say() speaks every word and then falls quiet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from michi_core.model.config import FlowConfig, SpeechConfig, tiny
from michi_core.model.model import MichiModel
from michi_core.model.phonemes import PhonemeTable
from michi_core.model.speech import plan_utterance
from michi_core.session.engine import DuplexSession, SamplingSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = "bring snacks for the picnic, please."


@pytest.fixture
def speech_model() -> MichiModel:
    config = tiny()
    config.speech = SpeechConfig(width=32, num_layers=2, num_heads=4, phoneme_dim=8,
                                 flow=FlowConfig(width=32, num_blocks=2, time_embed_dim=16))
    torch.manual_seed(0)
    model = MichiModel(config).eval()
    for p in model.speech.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_engine_feeds_what_training_fed(speech_model):
    """With the word timings of a training utterance forced, the backbone reads the same positions and the
    stack reads the same backbone states as the speak stage's cache (the pointer features are checked
    against training in tests/core/model/test_speech.py)."""
    from training.stages.speak import backbone_states, frame_plan

    model = speech_model
    stack = model.speech
    utterance = plan_utterance(TEXT, model.tokenizer, PhonemeTable(stack.config.symbols))
    starts = 0.05 + 0.055 * np.arange(len(utterance.symbol_ids))
    frames = int(starts[-1] / 0.08) + 6
    plan = frame_plan(utterance, starts, frames, stack.config, 0.08)
    cached = backbone_states(model.backbone, model.tokenizer, plan.tokens)  # what the cache holds

    session = DuplexSession(model, SamplingSettings(seed=0))
    session.say(TEXT)
    silence = np.zeros(model.config.codec.frame_size, np.float32)
    states, features = [], []
    for t in range(frames):
        stream = session.state.speech  # made by the first step, which reads the queued text
        if stream is not None:
            features.append((t, stream.features(session.state.speech_hidden, model.config.backbone.hidden_size)))
        result = session.step(silence, force_text=1 if plan.emit[t] else session.pad_id)
        if result.model_token != session.pad_id:
            states.append(session.state.speech_hidden.clone())
    assert len(states) > 3
    torch.testing.assert_close(torch.stack(states), cached[:len(states)], atol=1e-4, rtol=1e-4)
    assert len(features) == frames - 1
    for t, f in features:
        index = plan.token_index[t]
        expected = cached[index] if index >= 0 else torch.zeros(model.config.backbone.hidden_size)
        torch.testing.assert_close(f.backbone[0, 0], expected, atol=1e-4, rtol=1e-4)


def test_say_writes_every_word_then_falls_quiet(speech_model):
    session = DuplexSession(speech_model, SamplingSettings(seed=0, say_max_wait_frames=3))
    session.say(TEXT)
    results = list(session.run([], settle_seconds=0.4, max_tail_seconds=20))
    written = "".join(r.model_text for r in results)
    assert written == TEXT
    assert not session.is_saying
    assert len(results) < 20 * speech_model.config.codec.frame_rate, "say() never finished"
