"""`michi-train ship codec`: a trained codec and its own evaluation go into assets/ in float16, with
how it was trained; a report of other weights, or a codec no preset uses, is refused."""

import dataclasses
import json

import pytest
import torch

from michi_core.model.codec import Codec
from michi_core.model.config import tiny
from training.ship import ShipError, ship_codec


def _export(directory, seed=0, config=None):
    torch.manual_seed(seed)
    codec = Codec(config or tiny().codec)
    codec.save_pretrained(directory)
    return codec


def _evaluation(directory, checkpoint):
    directory.mkdir(parents=True)
    (directory / "eval.json").write_text(json.dumps({"evaluation": "codec", "checkpoint": str(checkpoint),
                                                     "metrics": {"wer": {"resynthesized": 0.3}}}))
    (directory / "EVAL.md").write_text("# Codec evaluation\n")
    (directory / "loss_codec.png").write_bytes(b"\x89PNG")
    (directory / "audio").mkdir()  # the scored audio stays behind


def test_a_codec_ships_in_float16_with_its_report_and_training_record(tmp_path):
    codec = _export(tmp_path / "export")
    _evaluation(tmp_path / "eval", tmp_path / "export")
    run = tmp_path / "run" / "checkpoints" / "step_00000042"
    run.mkdir(parents=True)
    (run.parent / "latest.txt").write_text("step_00000042\n")
    (run / "trainer_state.json").write_text(json.dumps({"stage": "codec", "step": 42,
                                                        "config": {"lr": 5e-4, "data": "/somewhere"}}))
    shipped = ship_codec(tmp_path / "export", tmp_path / "eval", tmp_path / "run", tmp_path / "assets" / "tiny")
    assert sorted(p.name for p in shipped.iterdir()) == ["EVAL.md", "TRAINING.json", "config.json", "eval.json",
                                                         "loss_codec.png", "model.safetensors"]
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(shipped / "model.safetensors")).values()} == {torch.float16}
    loaded = Codec.from_pretrained(shipped)
    for key, value in codec.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.half().float()), key
    training = json.loads((shipped / "TRAINING.json").read_text())
    assert training["steps"] == 42 and training["stored_dtype"] == "float16"
    assert training["float16_resynthesis_error_db"] < -30 and "data" not in training["config"]
    assert not (tmp_path / "assets" / "tiny.partial").exists()


def test_a_report_of_other_weights_is_refused(tmp_path):
    _export(tmp_path / "export", seed=0)
    _export(tmp_path / "other", seed=1)
    _evaluation(tmp_path / "eval", tmp_path / "other")
    with pytest.raises(ShipError, match="not the weights"):
        ship_codec(tmp_path / "export", tmp_path / "eval", destination=tmp_path / "assets" / "tiny")
    with pytest.raises(ShipError, match="no eval.json"):
        ship_codec(tmp_path / "export", tmp_path / "nowhere", destination=tmp_path / "assets" / "tiny")
    assert not (tmp_path / "assets").exists()


def test_a_codec_of_no_preset_is_refused(tmp_path):
    _export(tmp_path / "export", config=dataclasses.replace(tiny().codec, latent_dim=6))
    _evaluation(tmp_path / "eval", tmp_path / "export")
    with pytest.raises(ShipError, match="no preset"):
        ship_codec(tmp_path / "export", tmp_path / "eval", destination=tmp_path / "assets" / "x")


def test_the_test_preset_is_not_shipped_and_a_wrong_run_folder_is_named(tmp_path):
    _export(tmp_path / "export")
    _evaluation(tmp_path / "eval", tmp_path / "export")
    with pytest.raises(ShipError, match="test preset"):
        ship_codec(tmp_path / "export", tmp_path / "eval")
    with pytest.raises(ShipError, match="no training checkpoint"):
        ship_codec(tmp_path / "export", tmp_path / "eval", tmp_path / "norun", tmp_path / "assets" / "tiny")
    with pytest.raises(ShipError, match="not a usable codec checkpoint"):
        ship_codec(tmp_path / "eval", tmp_path / "eval", destination=tmp_path / "assets" / "tiny")
    assert not (tmp_path / "assets").exists()
