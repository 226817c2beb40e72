"""DuplexSession: streaming equals the training forward, prompts, say(), long calls."""

import numpy as np
import pytest
import torch

from michi_core.model.config import tiny
from michi_core.model.model import IGNORE, MichiBatch, MichiModel, build_batch, shift_right
from michi_core.session.engine import DuplexSession, SamplingSettings, VoicePrompt

TOL = 1e-4  # fp32: step-by-step with a KV cache vs one full-sequence pass


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MichiModel(tiny()).eval()


def _recording(model, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    text = torch.randint(0, 256, (1, n), generator=g)
    latents = torch.randn(1, n, c.codec.latent_dim, generator=g)
    audio = 0.1 * torch.randn(1, n * c.codec.frame_size, generator=g)
    return text, latents, audio


def offline_reference(model, batch):
    """Text logits (b, L, V) and flow conditions (b, L, h) of the training forward's full pass."""
    with torch.inference_mode():
        out = model.outputs(batch)
    return out.text_logits, out.flow_condition


def test_step_by_step_equals_the_training_layout(model):
    """The batch training builds (build_batch, as batch_to_michi calls it: contexts of different
    lengths left-padded, a shorter recording right-padded) == what the session computes frame by frame."""
    fs = model.config.codec.frame_size
    tok = model.tokenizer
    text, latents, audio = _recording(model, n=12)
    text, latents, audio = text.repeat(2, 1), latents.repeat(2, 1, 1), audio.repeat(2, 1)
    prompts = ["You are Michi.", "Hi."]
    ids = [tok.encode(p) for p in prompts]
    context = torch.full((2, max(map(len, ids))), tok.pad_id)
    context_mask = torch.zeros_like(context, dtype=torch.bool)
    for row, row_ids in enumerate(ids):  # real tokens first, as collate_frames gives them
        context[row, :len(row_ids)] = torch.tensor(row_ids)
        context_mask[row, :len(row_ids)] = True
    frame_mask = torch.ones(2, 12, dtype=torch.bool)
    frame_mask[1, 9:] = False  # the second recording is 9 frames long
    batch = build_batch(context, text, latents, audio, tok.pad_id, context_mask=context_mask, frame_mask=frame_mask)
    logits, cond = offline_reference(model, batch)
    width = context.shape[1]

    for row, prompt in enumerate(prompts):
        session = DuplexSession(model, SamplingSettings(seed=0), keep_debug=True)
        session.prefill_text(prompt)
        for t in range(int(frame_mask[row].sum())):
            r = session.step(audio[row, t * fs:(t + 1) * fs], force_text=int(text[row, t]),
                             force_latent=latents[row, t])
            assert (r.text_logits - logits[row, width + t]).abs().max() <= TOL, f"row {row}: text logits, frame {t}"
            assert (r.flow_condition - cond[row, width + t]).abs().max() <= TOL, f"row {row}: flow condition, frame {t}"


def test_text_inserted_mid_call_matches_the_same_layout_offline(model):
    """[prefix][4 frames][typed text][4 frames] step by step == one forward over that layout."""
    fs = model.config.codec.frame_size
    pad = model.tokenizer.pad_id
    text, latents, audio = _recording(model, n=8, seed=1)
    prefix, typed = model.tokenizer.encode("Hi."), model.tokenizer.encode("Oakhaven's sky is purple.")
    p, m = len(prefix), len(typed)
    frames_at = list(range(p, p + 4)) + list(range(p + 4 + m, p + 8 + m))
    length = p + m + 8
    input_ids = torch.zeros(1, length, dtype=torch.long)
    input_ids[0, :p] = torch.tensor(prefix)
    input_ids[0, p + 4:p + 4 + m] = torch.tensor(typed)
    input_ids[0, frames_at] = shift_right(text, pad)[0]
    frame_mask = torch.zeros(1, length, dtype=torch.bool)
    frame_mask[0, frames_at] = True
    prev_latents = torch.zeros(1, length, latents.shape[-1])
    prev_latents[0, frames_at] = shift_right(latents, 0.0)[0]
    targets = torch.full((1, length), IGNORE)
    targets[0, frames_at] = text[0]
    batch = MichiBatch(input_ids, frame_mask, prev_latents, audio, targets, prev_latents, frame_mask)
    logits, _ = offline_reference(model, batch)

    session = DuplexSession(model, keep_debug=True)
    session.prefill_text("Hi.")
    for t in range(8):
        if t == 4:
            session.prefill_text("Oakhaven's sky is purple.")
        r = session.step(audio[0, t * fs:(t + 1) * fs], force_text=int(text[0, t]), force_latent=latents[0, t])
        assert (r.text_logits - logits[0, frames_at[t]]).abs().max() <= TOL, f"frame {t}"


def test_inserted_text_changes_what_the_model_predicts(model):
    fs = model.config.codec.frame_size
    silence = np.zeros(fs, np.float32)
    a, b = DuplexSession(model, keep_debug=True), DuplexSession(model, keep_debug=True)
    for s in (a, b):
        s.step(silence, force_text=s.pad_id)
    b.prefill_text("In Oakhaven the sky is purple.")
    ra, rb = a.step(silence, force_text=a.pad_id), b.step(silence, force_text=b.pad_id)
    assert not torch.allclose(ra.text_logits, rb.text_logits)


def test_a_step_returns_one_frame_of_audio_text_and_stage_timings(model):
    session = DuplexSession(model, SamplingSettings(seed=0))
    r = session.step(np.zeros(model.config.codec.frame_size, np.float32))
    assert r.audio.shape == (model.config.codec.frame_size,) and r.audio.dtype == np.float32
    assert np.isfinite(r.audio).all() and np.abs(r.audio).max() <= 1.0
    t = r.timings
    assert min(t.listen_ms, t.backbone_ms, t.flow_ms, t.codec_ms) > 0
    assert t.total_ms == pytest.approx(t.listen_ms + t.backbone_ms + t.flow_ms + t.codec_ms, rel=1e-6)
    assert r.frame_index == 0 and session.step(np.zeros(model.config.codec.frame_size)).frame_index == 1


def test_a_wrong_frame_size_is_refused_with_the_expected_size(model):
    with pytest.raises(AssertionError, match="1920"):
        DuplexSession(model).step(np.zeros(1000, np.float32))


def test_say_speaks_the_text_in_order_and_then_goes_on(model):
    session = DuplexSession(model, SamplingSettings(seed=0, say_max_wait_frames=3))
    session.say("hello world")
    silence = np.zeros(model.config.codec.frame_size, np.float32)
    said, frames = "", 0
    while session.is_saying:
        r = session.step(silence)
        said += r.model_text
        frames += 1
        assert frames <= 11 * 4, "say() stalled"
    assert said == "hello world"
    session.step(silence)  # free running again


def test_the_two_logit_shortcut_of_say_decides_like_the_full_logits(model):
    silence = np.zeros(model.config.codec.frame_size, np.float32)
    runs = []
    for keep_debug in (False, True):  # keep_debug computes every logit; without it only PAD and the word
        s = DuplexSession(model, SamplingSettings(seed=0, say_max_wait_frames=50), keep_debug=keep_debug)
        s.say("some words")
        runs.append([s.step(silence).model_token for _ in range(30)])
    assert runs[0] == runs[1]


def test_eager_settings_say_a_word_every_frame_and_shy_ones_wait(model):
    silence = np.zeros(model.config.codec.frame_size, np.float32)
    eager = DuplexSession(model, SamplingSettings(seed=0, pad_bias=-1e4))
    eager.say("abc")
    assert [eager.step(silence).model_text for _ in range(3)] == ["a", "b", "c"]
    shy = DuplexSession(model, SamplingSettings(seed=0, pad_bias=1e4, say_max_wait_frames=5))
    shy.say("a")
    assert [shy.step(silence).model_text for _ in range(6)] == ["", "", "", "", "", "a"]


def test_greedy_equals_top1_sampling_and_a_seed_reproduces_a_call(model):
    logits = torch.randn(model.config.backbone.vocab_size, generator=torch.Generator().manual_seed(0))
    greedy = DuplexSession(model, SamplingSettings(text_temperature=0))
    top1 = DuplexSession(model, SamplingSettings(text_temperature=1.5, text_top_k=1, seed=4))
    assert greedy._sample(logits) == top1._sample(logits) == int(logits.argmax())

    fs = model.config.codec.frame_size
    audio = np.random.default_rng(0).standard_normal((6, fs)).astype(np.float32) * 0.1

    def run(seed):
        s = DuplexSession(model, SamplingSettings(seed=seed))
        out = [s.step(a) for a in audio]
        return [r.model_token for r in out], np.concatenate([r.audio for r in out])

    t1, a1 = run(3)
    t2, a2 = run(3)
    t3, a3 = run(4)
    assert t1 == t2 and np.array_equal(a1, a2)
    assert not np.array_equal(a1, a3), "the seed changes nothing: sampling is not random"


def test_reset_forgets_the_call(model):
    fs = model.config.codec.frame_size
    session = DuplexSession(model, SamplingSettings(seed=0), keep_debug=True)
    first = session.step(np.zeros(fs, np.float32), force_text=session.pad_id)
    session.prefill_text("something else entirely")
    session.step(np.ones(fs, np.float32) * 0.1)
    session.reset()
    assert session.context_length == 0 and session.frame_index == 0
    again = session.step(np.zeros(fs, np.float32), force_text=session.pad_id)
    assert torch.equal(first.text_logits, again.text_logits)


def test_a_voice_prompt_is_pinned_and_changes_the_voice(model):
    fs, d = model.config.codec.frame_size, model.config.codec.latent_dim
    voice = VoicePrompt(latents=torch.randn(10, d, generator=torch.Generator().manual_seed(5)), transcript="hey")
    plain = DuplexSession(model, SamplingSettings(seed=0), keep_debug=True)
    voiced = DuplexSession(model, SamplingSettings(seed=0), keep_debug=True)
    voiced.set_voice(voice)
    assert voiced.context_length == len("hey") + 10
    assert bool(voiced.context.pinned[: voiced.context_length].all())
    assert torch.equal(voiced.state.prev_latent[0, 0], voice.latents[-1])
    silence = np.zeros(fs, np.float32)
    a, b = plain.step(silence, force_text=plain.pad_id), voiced.step(silence, force_text=plain.pad_id)
    assert not torch.allclose(a.flow_condition, b.flow_condition)


def test_a_10000_frame_call_keeps_its_prefix_and_never_overflows(model):
    fs = model.config.codec.frame_size
    session = DuplexSession(model, SamplingSettings(seed=0))
    session.prefill_text("System prompt.")
    pinned_embeds = session.context.embeds[: len("System prompt.")].clone()
    frames = np.random.default_rng(0).standard_normal((16, fs)).astype(np.float32) * 0.05
    for i in range(10_000):
        r = session.step(frames[i % 16])
        assert session.context_length <= model.config.backbone.max_positions
    assert np.isfinite(r.audio).all()
    assert session.context.dropped > 9000
    assert torch.equal(session.context.embeds[: len("System prompt.")], pinned_embeds), "the prefix was dropped"
    assert session.state.backbone.length == session.context_length


def test_a_prompt_too_long_for_the_window_is_refused_clearly(model):
    session = DuplexSession(model)
    with pytest.raises(ValueError, match="shorten"):
        session.prefill_text("x" * model.config.backbone.max_positions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_runs_the_same_code():
    torch.manual_seed(0)
    m = MichiModel(tiny())
    session = DuplexSession(m, SamplingSettings(seed=0), device="cuda")
    r = session.step(np.zeros(m.config.codec.frame_size, np.float32))
    assert r.audio.shape == (m.config.codec.frame_size,)


def test_a_bf16_backbone_stays_close_to_fp32_and_keeps_the_heads_in_fp32():
    torch.manual_seed(0)
    ref_model, bf_model = MichiModel(tiny()).eval(), MichiModel(tiny()).eval()
    bf_model.load_state_dict(ref_model.state_dict())
    fs = ref_model.config.codec.frame_size
    ref = DuplexSession(ref_model, keep_debug=True)
    bf = DuplexSession(bf_model, keep_debug=True, dtype=torch.bfloat16)
    assert bf_model.text_embedding.weight.dtype == torch.bfloat16
    assert bf_model.flow.in_proj.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in bf_model.codec.parameters()), "the codec stays fp32"
    audio = np.random.default_rng(0).standard_normal((5, fs)).astype(np.float32) * 0.1
    for frame in audio:
        r = ref.step(frame, force_text=ref.pad_id, force_latent=torch.zeros(8))
        b = bf.step(frame, force_text=ref.pad_id, force_latent=torch.zeros(8))
        assert b.audio.dtype == np.float32
        assert (r.text_logits - b.text_logits).abs().max() < 0.05  # bf16 keeps ~3 significant digits


def test_text_comes_out_in_whole_characters_and_stray_bytes_never_show():
    from michi_core.model.tokenizer import ByteTokenizer
    from michi_core.session.engine import _IncrementalDecoder

    decoder = _IncrementalDecoder(ByteTokenizer())
    assert [decoder.push(b) for b in "é!".encode()] == ["", "é", "!"], "a 2-byte character waits for its end"
    stray = [decoder.push(0xFF) for _ in range(4)]  # never valid UTF-8: given up on after 4 bytes
    assert "".join(stray) == "" and decoder.pending == []
    assert decoder.push(ord("a")) == "a"
