"""MichiModel: the training forward, its losses, learning, and checkpoints."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from michi_core.model.config import tiny
from michi_core.model.model import IGNORE, CheckpointError, MichiModel, build_batch


def _batch(model, b=2, n=6, prefix="Hi!", seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    tok = model.tokenizer
    prefix_ids = torch.tensor([tok.encode(prefix)] * b)
    text = torch.randint(0, 256, (b, n), generator=g)
    text[:, ::2] = tok.pad_id  # most slots are PAD, as in real inner-monologue targets
    latents = torch.randn(b, n, c.codec.latent_dim, generator=g)
    audio = 0.1 * torch.randn(b, n * c.codec.frame_size, generator=g)
    user_text = torch.randint(0, 256, (b, n), generator=g)
    return build_batch(prefix_ids, text, latents, audio, tok.pad_id, user_text=user_text)


def _model(seed=0):
    torch.manual_seed(seed)
    return MichiModel(tiny())


def test_build_batch_shifts_inputs_against_targets():
    model = _model()
    batch = _batch(model, b=1, n=4, prefix="ab")
    pad = model.tokenizer.pad_id
    assert batch.frame_mask.tolist() == [[False, False, True, True, True, True]]
    # frame t's input holds y_{t-1}; its target is y_t
    assert batch.input_ids[0, 2].item() == pad
    assert torch.equal(batch.input_ids[0, 3:], batch.text_targets[0, 2:5])
    assert torch.equal(batch.prev_latents[0, 3:], batch.latent_targets[0, 2:5])
    assert torch.equal(batch.prev_latents[0, 2], torch.zeros(model.config.codec.latent_dim))
    # the context is read, not predicted
    assert batch.text_targets[0, :2].tolist() == [IGNORE, IGNORE]


def test_forward_returns_every_loss_and_trains_every_part():
    model = _model()
    losses = model(_batch(model))
    for name, value in losses.as_dict().items():
        assert value > 0 and value == value, name
    assert losses.total.item() == pytest.approx(
        losses.text.item() + losses.flow.item() + 0.5 * losses.listen.item(), rel=1e-5)
    losses.total.backward()
    for part in (model.listen, model.flow, model.audio_in, model.backbone):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), type(part).__name__
    assert all(p.grad is None for p in model.codec.parameters()), "the codec is trained by its own stage"


def test_pad_targets_count_less_than_words():
    model = _model()
    pad = model.tokenizer.pad_id
    logits = torch.randn(4, model.config.backbone.vocab_size)
    targets = torch.tensor([pad, pad, 5, 7])
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    model.config.loss.pad_weight = 0.1
    assert torch.allclose(model._weighted_ce(logits, targets, pad), (0.1 * ce[:2].sum() + ce[2:].sum()) / 2.2)
    model.config.loss.pad_weight = 1.0
    assert torch.allclose(model._weighted_ce(logits, targets, pad), ce.mean())


def test_a_few_steps_of_training_lower_every_loss():
    model = _model()
    batch = _batch(model, b=2, n=8)
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("codec.")], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = model(batch, generator=g).as_dict()
    for _ in range(60):
        loss = model(batch, generator=g)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    last = model(batch, generator=g).as_dict()
    for name in ("text", "flow", "listen"):
        assert last[name] < 0.7 * first[name], f"{name}: {first[name]:.3f} -> {last[name]:.3f}"


def test_save_and_load_give_identical_outputs(tmp_path):
    model = _model().eval()
    batch = _batch(model)
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = MichiModel.from_pretrained(tmp_path / "ckpt").eval()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    with torch.no_grad():
        a, b = model(batch, generator=g1), loaded(batch, generator=g2)
    assert a.as_dict() == b.as_dict()
    assert loaded.backbone.lm_head.weight.data_ptr() == loaded.text_embedding.weight.data_ptr(), "ties lost"


def test_a_checkpoint_from_another_config_fails_clearly(tmp_path):
    _model().save_pretrained(tmp_path / "ckpt")
    other = tiny()
    other.flow = dataclasses.replace(other.flow, width=48)
    with pytest.raises(CheckpointError, match="flow.width"):
        MichiModel.from_pretrained(tmp_path / "ckpt", config=other)


def test_weights_that_do_not_fit_the_config_fail_clearly(tmp_path):
    _model().save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    state = load_file(str(weights))
    state["flow.in_proj.weight"] = torch.zeros(3, 3)
    del state["audio_in.bias"]
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="another Michi version"):
        MichiModel.from_pretrained(tmp_path / "ckpt")


def test_a_checkpoint_from_another_format_version_fails_clearly(tmp_path):
    _model().save_pretrained(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    data = json.loads(path.read_text())
    data["format_version"] = 999
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="format version 999"):
        MichiModel.from_pretrained(tmp_path / "ckpt")


def test_a_directory_that_is_not_a_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="not a Michi checkpoint"):
        MichiModel.from_pretrained(tmp_path)


def test_small_checkpoints_leave_the_backbone_out(tmp_path, small_model):
    small_model.save_pretrained(tmp_path / "small")
    state = load_file(str(tmp_path / "small" / "model.safetensors"))
    assert not any(k.startswith("backbone.") for k in state)
    size_mb = (tmp_path / "small" / "model.safetensors").stat().st_size / 2**20
    assert size_mb < 200
    loaded = MichiModel.from_pretrained(tmp_path / "small", backbone=small_model.backbone)
    assert torch.equal(loaded.flow.out_proj.weight, small_model.flow.out_proj.weight)


def test_a_lora_adapter_trains_only_its_delta_and_round_trips(tmp_path):
    config = tiny()
    config.adapter = dataclasses.replace(config.adapter, rank=4)
    torch.manual_seed(0)
    model = MichiModel(config)
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = model.text_embedding.weight.clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss = model(_batch(model))
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    assert torch.equal(model.text_embedding.weight, base), "the base backbone moved"
    lora_b = [p for n, p in model.backbone.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b), "LoRA did not learn"
    # a checkpoint without the base backbone: heads + LoRA delta, the base given at load
    model.save_pretrained(tmp_path / "ckpt", include_backbone=False)
    saved = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert any("lora_" in k for k in saved) and not any(k.startswith("backbone.") and "lora_" not in k for k in saved)
    torch.manual_seed(0)
    fresh_base = MichiModel(tiny()).backbone  # the same random base, as a GGUF would give it
    loaded = MichiModel.from_pretrained(tmp_path / "ckpt", backbone=fresh_base).eval()
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        a = model(batch, generator=torch.Generator().manual_seed(0))
        b = loaded(batch, generator=torch.Generator().manual_seed(0))
    assert a.as_dict() == pytest.approx(b.as_dict(), rel=1e-5)


def test_a_shipped_codec_goes_into_its_presets_model_and_no_other(tmp_path, monkeypatch, caplog):
    """assets/codecs/<preset>: loaded into a model of that preset with the same codec config; one
    trained for another config is left out with a warning (the heads never change)."""
    import logging
    import shutil

    import michi_core.model.model as model_module
    from michi_core.model.codec import Codec
    from michi_core.model.model import load_shipped_codec

    torch.manual_seed(1)
    trained = Codec(tiny().codec)
    trained.save_pretrained(tmp_path / "codecs" / "custom")
    monkeypatch.setattr(model_module, "SHIPPED_CODECS", tmp_path / "codecs")
    config = tiny()
    config.preset = "custom"
    torch.manual_seed(2)
    model = MichiModel(config)
    flow_before = {k: v.clone() for k, v in model.flow.state_dict().items()}
    assert load_shipped_codec(model)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in model.codec.state_dict().items())
    assert all(torch.equal(v, flow_before[k]) for k, v in model.flow.state_dict().items())

    shutil.rmtree(tmp_path / "codecs" / "custom")
    Codec(dataclasses.replace(tiny().codec, latent_dim=6)).save_pretrained(tmp_path / "codecs" / "custom")
    with caplog.at_level(logging.WARNING):
        assert not load_shipped_codec(MichiModel(config))
    assert "another codec config" in caplog.text
    config.preset = "nothing-shipped"
    assert not load_shipped_codec(MichiModel(config))
