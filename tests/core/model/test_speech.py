"""The speech stack: streaming equals the whole-sequence forward, the text stream replays what
training saw, and words are matched to espeak's phoneme groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from michi_core.model.config import FlowConfig, SpeechConfig
from michi_core.model.phonemes import PhonemeTable, phonemize, piper_symbols, word_groups, words_to_groups
from michi_core.model.speech import FrameFeatures, SpeechStack, SpeechStream, plan_utterance, window_ids
from michi_core.model.tokenizer import ByteTokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_stack(window: int = 64) -> SpeechStack:
    config = SpeechConfig(width=32, num_layers=2, num_heads=4, attention_window=window, phoneme_dim=8,
                          symbols=piper_symbols(), flow=FlowConfig(width=32, num_blocks=2, time_embed_dim=16))
    torch.manual_seed(0)
    stack = SpeechStack(config, latent_dim=8, backbone_dim=16).eval()
    for p in stack.parameters():  # AdaLN-Zero starts as identity: give every layer a say
        torch.nn.init.normal_(p, std=0.2)
    return stack


@pytest.mark.parametrize("window", [64, 4])
def test_streaming_equals_whole_sequence(window):
    stack = tiny_stack(window)
    n, s = 11, len(stack.config.window_offsets)
    g = torch.Generator().manual_seed(1)
    features = FrameFeatures(window=torch.randint(0, stack.config.unseen_id + 1, (1, n, s), generator=g),
                             stay=torch.randint(0, 5, (1, n), generator=g),
                             ahead=torch.randint(0, 9, (1, n), generator=g),
                             backbone=torch.randn(1, n, 16, generator=g))
    prev = torch.randn(1, n, 8, generator=g)
    with torch.no_grad():
        whole = stack(prev, features)[0]
        state = stack.new_state()
        steps = []
        for t in range(n):
            state.prev_latent = prev[:, t]
            one = FrameFeatures(features.window[:, t:t + 1], features.stay[:, t:t + 1],
                                features.ahead[:, t:t + 1], features.backbone[:, t:t + 1])
            steps.append(stack.step(state, one)[0])
    torch.testing.assert_close(torch.stack(steps), whole, atol=1e-5, rtol=1e-5)


def test_espeak_joined_words_are_matched_to_their_group():
    text = "do we still need flour from the shop?"
    symbols = phonemize(text)
    assert len(word_groups(symbols)) == 7  # espeak says "from the" as one word
    assert words_to_groups(text.split(), symbols) == [0, 1, 2, 3, 4, 5, 5, 6]


def test_window_hides_words_not_yet_in_the_text_stream():
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    got = window_ids(ids, torch.tensor([[1]]), torch.tensor([[3]]), (-2, -1, 0, 1, 2, 3, 4), unseen_id=99)
    assert got.tolist() == [[[0, 5, 6, 7, 99, 99, 0]]]


def test_replayed_text_stream_gives_the_training_features():
    """The streaming state, driven with a corpus utterance's timings, feeds the stack exactly the
    per-frame features the training cache holds for it."""
    from training.stages.speak import frame_plan

    tokenizer = ByteTokenizer()
    stack = tiny_stack()
    text = "bring snacks for the picnic, please."
    utterance = plan_utterance(text, tokenizer, PhonemeTable(stack.config.symbols))
    starts = 0.05 + 0.055 * np.arange(len(utterance.symbol_ids))  # one symbol every 55 ms
    num_frames = int(starts[-1] / 0.08) + 6
    plan = frame_plan(utterance, starts, num_frames, stack.config, 0.08)
    stream = SpeechStream(stack, utterance)
    written = []
    for t in range(num_frames):
        f = stream.features(None, 16)
        assert f.window[0, 0].tolist() == plan.window[t].tolist(), f"window differs at frame {t}"
        assert int(f.stay) == plan.stay[t] and int(f.ahead) == plan.ahead[t], f"stay/ahead differ at frame {t}"
        assert stream.text.tokens_written - 1 == plan.token_index[t]
        step = stream.step(None, force_emit=bool(plan.emit[t]), force_advance=int(plan.advance[t]))
        if step.token is not None:
            written.append(step.token)
    assert written == plan.tokens[:len(written)]
    assert bytes(plan.tokens).decode() == text


def test_phoneme_table_is_the_voice_corpus_table():
    from michi_core.model.phonemes import piper_voice_symbols

    assert piper_symbols() == piper_voice_symbols()
