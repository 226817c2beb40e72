"""The speak stage (speech stack on a frozen, cached backbone and codec): a tiny run lowers every
loss, and the cached backbone states train exactly as the backbone run inside the step."""

from __future__ import annotations

import pytest
import torch

from michi_core.model.codec import Codec
from michi_core.model.config import CodecConfig
from training.stages.speak import SpeakStage, SpeakStageConfig
from training.trainer import StepContext, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def voice_corpus(tmp_path_factory):
    """A few seconds of piper joe with its phoneme timings, and a small random codec."""
    from training.data.manifest import Manifest
    from training.data.voice_corpus import build_voice_corpus

    root = tmp_path_factory.mktemp("voice")
    build_voice_corpus(root / "corpus", hours=0.004, workers=1)
    rows = list(Manifest(root / "corpus").rows("filter_reason is null"))
    assert len(rows) >= 3, "the voice corpus builder made too few usable utterances"
    assert all(r["aligner"] == "piper" and r["params"]["phonemes"] for r in rows)
    torch.manual_seed(0)
    Codec(CodecConfig(vocoder="random", vocoder_channels=16, width=32)).save_pretrained(root / "codec")
    return root


def stage_config(root, tmp_path, **overrides) -> SpeakStageConfig:
    values = dict(data=str(root / "corpus"), codec=str(root / "codec"), cache=str(tmp_path / "cache"),
                  out_dir=str(tmp_path / "run"), preset="tiny", batch_size=4, max_frames=48, width=32,
                  num_layers=2, steps=60, warmup_steps=5, lr=3e-3, eval_every=0, save_every=1000)
    values.update(overrides)
    return SpeakStageConfig(**values)


def test_tiny_training_lowers_every_loss(voice_corpus, tmp_path):
    trainer = Trainer(SpeakStage(stage_config(voice_corpus, tmp_path)))
    stage, stack = trainer.stage, trainer.modules["speech"]
    fixed = stage.batch(0, 0, 0, 1)

    def losses():
        stack.eval()
        with torch.no_grad():
            out = stack.loss(fixed.prev_latents, fixed.features, fixed.targets,
                             generator=torch.Generator().manual_seed(0)).as_dict()
        stack.train()
        return out

    before = losses()
    trainer.fit()
    after = losses()
    for name in ("flow", "timing", "advance"):
        assert after[name] < 0.8 * before[name], f"{name} loss did not fall: {before[name]:.3f} -> {after[name]:.3f}"
    assert (tmp_path / "run" / "export" / "speech.safetensors").is_file()


def test_cached_backbone_states_train_like_the_backbone_itself(voice_corpus, tmp_path):
    results = []
    for cached in (True, False):
        torch.manual_seed(0)
        trainer = Trainer(SpeakStage(stage_config(voice_corpus, tmp_path / str(cached), cache_backbone=cached,
                                                  cache=str(tmp_path / "cache"))))
        batch = trainer.stage.batch(3, 0, 0, 1)
        assert batch.keep_backbone.any(), "the batch must use the backbone feature to test anything"
        logs = trainer.stage.train_step(batch, 3, StepContext(trainer))
        weights = {k: v.clone() for k, v in trainer.modules["speech"].state_dict().items()}
        results.append((logs, weights))
    (cached_logs, cached_weights), (live_logs, live_weights) = results
    for name in ("flow", "timing", "advance"):
        assert cached_logs[name] == pytest.approx(live_logs[name], rel=1e-5), name
    for key in cached_weights:
        torch.testing.assert_close(cached_weights[key], live_weights[key], atol=1e-6, rtol=1e-5)
