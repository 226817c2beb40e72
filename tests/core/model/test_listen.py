import torch

from michi_core.model.config import tiny
from michi_core.model.listen import ListenHead


def _head():
    torch.manual_seed(0)
    c = tiny()
    return ListenHead(c.listen, c.codec, backbone_width=c.backbone.hidden_size).eval(), c


@torch.no_grad()
def test_streaming_equals_offline_and_gives_one_embedding_per_frame():
    head, c = _head()
    fs = c.codec.frame_size
    wave = torch.randn(2, 10 * fs)
    offline = head(wave)
    assert offline.shape == (2, 10, c.backbone.hidden_size)
    head.start_streaming(2)
    streamed = torch.cat([head(wave[:, i * fs:(i + 1) * fs]) for i in range(10)], dim=1)
    assert (streamed - offline).abs().max().item() <= 1e-4


@torch.no_grad()
def test_the_listen_head_never_looks_ahead():
    head, c = _head()
    fs = c.codec.frame_size
    wave = torch.randn(1, 8 * fs)
    later_changed = wave.clone()
    later_changed[:, 5 * fs:] = torch.randn(1, 3 * fs)
    a, b = head(wave), head(later_changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@torch.no_grad()
def test_user_text_logits_score_every_vocabulary_entry():
    head, c = _head()
    emb = head(torch.randn(1, 3 * c.codec.frame_size))
    table = torch.randn(c.backbone.vocab_size, c.backbone.hidden_size)
    assert head.text_logits(emb, table).shape == (1, 3, c.backbone.vocab_size)
