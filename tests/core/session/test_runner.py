"""Backbone runners: llama.cpp (input embeddings, KV cache in llama.cpp) gives the torch backbone's
hidden states and text choices, through a long prompt and through the window filling up.

The llama.cpp tests run when llama-cpp-python is installed (`pip install -e ".[fast]"`); without it
they are skipped, saying so.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from michi_core.model.config import small, tiny
from michi_core.model.model import MichiModel
from michi_core.session.engine import DuplexSession, SamplingSettings
from michi_core.session.runner import LlamaCppRunner, TorchRunner, llama_cpp_unavailable, make_runner

needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason='llama-cpp-python is not installed (pip install -e ".[fast]")')


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.reshape(-1, a.shape[-1]).float(),
                                                 b.reshape(-1, b.shape[-1]).float(), dim=-1)


@pytest.fixture
def tiny_model(one_torch_thread):
    torch.manual_seed(0)
    return MichiModel(tiny()).eval()


@pytest.fixture
def tiny_gguf(tiny_model, tmp_path):
    from michi_core.model.gguf_export import write_gguf

    return write_gguf(tiny_model.backbone, tmp_path / "tiny.gguf", "f32")


@torch.inference_mode()
def test_the_torch_runner_step_by_step_equals_one_pass_and_rebuild_equals_a_fresh_start(tiny_model):
    embeds = torch.randn(12, tiny_model.config.backbone.hidden_size)
    whole, _ = tiny_model.run_backbone(embeds[None], use_cache=False)
    runner = TorchRunner(tiny_model)
    first = runner.append(embeds[:9])
    steps = [runner.append(embeds[i:i + 1], last_only=True) for i in range(9, 12)]
    assert torch.allclose(torch.cat([first] + steps, dim=1), whole, atol=1e-5)
    assert runner.length == 12
    runner.rebuild(embeds[3:11], unchanged=0)
    assert runner.length == 8
    fresh, _ = tiny_model.run_backbone(embeds[3:12][None], use_cache=False)
    assert torch.allclose(runner.append(embeds[11:12]), fresh[:, -1:], atol=1e-5)
    runner.reset()
    assert runner.length == 0


@needs_llama_cpp
@torch.inference_mode()
def test_llama_cpp_gives_the_torch_hidden_states_and_words_on_the_same_weights(tiny_model, tiny_gguf):
    """A tiny random Llama written as an F32 GGUF: llama.cpp and torch agree to float rounding, for a
    long prompt prefilled in several llama.cpp batches and for single steps after it."""
    h = tiny_model.config.backbone.hidden_size
    embeds = torch.randn(100, h)
    whole, _ = tiny_model.run_backbone(embeds[None], use_cache=False)
    runner = LlamaCppRunner(tiny_gguf, n_ctx=tiny_model.config.backbone.max_positions, threads=1,
                            batch_positions=32)  # 90 positions go in 3 decode calls
    got = torch.cat([runner.append(embeds[:90])] + [runner.append(embeds[i:i + 1]) for i in range(90, 100)], dim=1)
    assert cosines(got, whole).min() > 0.9999
    assert torch.equal(tiny_model.text_logits(got).argmax(-1), tiny_model.text_logits(whole).argmax(-1))
    runner.reset()
    assert torch.allclose(runner.append(embeds[:5], last_only=True), whole[:, 4:5], atol=1e-3)


@needs_llama_cpp
def test_a_full_window_keeps_the_pinned_prefix_and_matches_torch_after_the_rebuild(tiny_model, tiny_gguf):
    """A call longer than the window (256 positions): both runners drop the same old positions, keep
    the system prompt, rebuild, and go on giving the same text logits."""
    settings = SamplingSettings(seed=0)
    reference = DuplexSession(tiny_model, settings, keep_debug=True, backbone_runner="torch")
    fast = DuplexSession(tiny_model, dataclasses.replace(settings), keep_debug=True,
                         backbone_runner=LlamaCppRunner(tiny_gguf, n_ctx=256, threads=1))
    assert fast.runner.name == "llama.cpp" and reference.runner.name == "torch"
    for s in (reference, fast):
        s.prefill_text("You are Michi.")
    prefix = fast.context.embeds[: fast.context_length].clone()
    fs = tiny_model.config.codec.frame_size
    audio = np.random.default_rng(0).standard_normal((400, fs)).astype(np.float32) * 0.05
    latent = torch.zeros(tiny_model.config.codec.latent_dim)
    worst = 1.0
    for frame in audio:
        r = reference.step(frame, force_text=reference.pad_id, force_latent=latent)
        f = fast.step(frame, force_text=reference.pad_id, force_latent=latent)
        worst = min(worst, float(cosines(r.text_logits, f.text_logits)))
    assert fast.context.dropped > 0 and fast.context.dropped == reference.context.dropped
    assert torch.equal(fast.context.embeds[: len(prefix)], prefix), "the system prompt was dropped"
    assert fast.runner.length == fast.context_length == reference.runner.length
    assert worst > 0.9999, f"llama.cpp's text logits drifted from torch's (cosine {worst:.6f})"


def test_a_lora_adapted_or_random_backbone_runs_in_torch():
    lora = small()
    lora.adapter = dataclasses.replace(lora.adapter, rank=8)
    assert "LoRA" in llama_cpp_unavailable(MichiModel(lora, meta=True))
    assert "random" in llama_cpp_unavailable(MichiModel(tiny(), meta=True))
    model = MichiModel(tiny())
    assert make_runner(model, torch.device("cpu"), "auto").name == "torch"
    with pytest.raises(ValueError, match="cannot run in llama.cpp"):
        make_runner(model, torch.device("cpu"), "llama.cpp")
    with pytest.raises(ValueError, match="unknown backbone runner"):
        make_runner(model, torch.device("cpu"), "onnx")


@needs_llama_cpp
@torch.inference_mode()
def test_the_small_backbone_runs_in_llama_cpp_and_says_paris(small_model):
    """The shipped GGUF in llama.cpp against its dequantized weights in torch, on a real prompt and on
    frame inputs: the hidden states agree, and the text head reads the same words from both."""
    runner = make_runner(small_model, torch.device("cpu"), "auto")
    assert runner.name == "llama.cpp"
    ids = small_model.tokenizer.encode("The capital of France is")
    prompt = small_model.embed_text(torch.tensor([ids]))[0]
    reference = TorchRunner(small_model)
    ref_hidden, got_hidden = reference.append(prompt), runner.append(prompt)
    assert small_model.tokenizer.decode([int(small_model.text_logits(got_hidden[0, -1]).argmax())]) == " Paris"
    # frame positions: PAD text + the model's own latent + a listen embedding, stepped one at a time
    g = torch.Generator().manual_seed(0)
    fs = small_model.config.codec.frame_size
    for _ in range(20):
        user = small_model.listen(0.05 * torch.randn(1, fs, generator=g))
        frame = small_model.embed_frames(torch.tensor([[small_model.tokenizer.pad_id]]),
                                         0.5 * torch.randn(1, 1, small_model.config.codec.latent_dim, generator=g),
                                         user)[0]
        ref_hidden = torch.cat([ref_hidden, reference.append(frame)], dim=1)
        got_hidden = torch.cat([got_hidden, runner.append(frame)], dim=1)
    cos = cosines(got_hidden, ref_hidden)
    assert float(cos.min()) > 0.99, f"hidden-state cosine {float(cos.min()):.4f}"
    # Words are read where there is text: on the prompt. (On random frame inputs the text logits are
    # near ties, and their argmax flips between two Q4_1 roundings: 88 % seen, which says nothing.)
    n = len(ids)
    ref_top = small_model.text_logits(ref_hidden[:, :n]).argmax(-1)
    got_top = small_model.text_logits(got_hidden[:, :n]).argmax(-1)
    agreement = float((ref_top == got_top).float().mean())
    assert agreement >= 0.9, f"text top-1 agreement on the prompt {agreement:.0%}"


@needs_llama_cpp
@torch.inference_mode()
def test_a_small_backbone_changed_after_loading_falls_back_to_torch(small_model):
    weight = small_model.backbone.model.layers[3].mlp.down_proj.weight
    saved = weight.clone()
    try:
        weight.normal_(0.0, 0.5)
        assert make_runner(small_model, torch.device("cpu"), "auto").name == "torch"
    finally:
        weight.copy_(saved)
