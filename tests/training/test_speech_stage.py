"""Speech and joint stages on the tiny preset over the CLI-built corpus: losses fall, exports load."""

import numpy as np

from michi_core.model.model import MichiModel
from michi_core.session.engine import DuplexSession
from training.stages.speech import SpeechStageConfig, batch_to_michi, frame_stage
from training.trainer import Trainer


def _config(out, corpus, **overrides):
    base = dict(out_dir=str(out), preset="tiny", data=str(corpus), batch_size=4, max_frames=24, lr=3e-3,
                warmup_steps=2, eval_every=0, save_every=1000, log_every=1, user_share=0.3)
    base.update(overrides)
    return SpeechStageConfig(**base)


def test_the_batch_layout_matches_the_engine(cli_corpus, tmp_path):
    stage = frame_stage(_config(tmp_path / "s", cli_corpus.path, steps=1))
    stage.build(__import__("torch").device("cpu"))
    kind, frames = stage.batch(0, 0, 0, 1)
    batch = batch_to_michi(frames, stage.model, stage.device)
    assert kind == "frames"
    n = frames["text_model"].shape[1]
    assert int(batch.frame_mask.sum(1).unique()) == n, "every row holds the same frame count"
    assert batch.user_audio.shape[1] == n * stage.model.config.codec.frame_size
    real = batch.attention_mask.bool() & batch.frame_mask
    assert bool((batch.text_targets[real] >= 0).all())
    assert bool((batch.text_targets[~batch.attention_mask.bool()] < 0).all())


def test_speech_then_joint_lower_their_losses_and_export_a_model_the_engine_runs(cli_corpus, tmp_path):
    speech = Trainer(frame_stage(_config(tmp_path / "speech", cli_corpus.path, steps=30)))
    history = [h for h in speech.fit() if "flow" in h]
    # On a frozen *random* tiny backbone the speak head learns fastest; text and listen follow slowly.
    for key, ratio in (("flow", 0.5), ("total", 0.95)):
        first, last = np.mean([h[key] for h in history[:5]]), np.mean([h[key] for h in history[-5:]])
        assert last < ratio * first, f"speech {key}: {first:.3f} -> {last:.3f}"
    assert not any(p.requires_grad for p in speech.unwrapped("model").backbone.parameters()), "speech froze nothing"

    joint = Trainer(frame_stage(_config(tmp_path / "joint", cli_corpus.path, mode="joint", steps=8, lora_rank=4,
                                        init=str(tmp_path / "speech" / "export"))))
    joint.fit()
    exported = MichiModel.from_pretrained(tmp_path / "joint" / "export")
    assert exported.config.adapter.rank == 4
    session = DuplexSession(exported)
    session.say("hello")
    out = [session.step(np.zeros(exported.config.codec.frame_size, np.float32)) for _ in range(8)]
    assert all(np.isfinite(r.audio).all() for r in out)
