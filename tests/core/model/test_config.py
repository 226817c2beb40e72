import json

import pytest

from michi_core.model.config import FORMAT_VERSION, PRESETS, CodecConfig, MichiConfig, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name):
    config = preset(name)
    again = MichiConfig.from_json(config.to_json())
    assert again == config
    assert again.codec.resblock_dilations == config.codec.resblock_dilations  # tuples, not lists


def test_audio_timing_comes_from_the_config():
    codec = CodecConfig()
    assert codec.frame_size == 1920 and codec.sample_rate == 24_000
    assert codec.frame_ms == pytest.approx(80.0) and codec.frame_rate == pytest.approx(12.5)


def test_inconsistent_codec_framing_is_refused():
    with pytest.raises(AssertionError, match="multiply to hop_length"):
        CodecConfig(vocoder_upsample_rates=(8, 8, 2))
    with pytest.raises(AssertionError, match="whole number of mel hops"):
        CodecConfig(mel_rate=22_050)


def test_a_config_from_another_format_version_is_refused():
    data = preset("tiny").to_dict()
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="format version"):
        MichiConfig.from_dict(data)


def test_unknown_fields_are_refused_not_ignored():
    data = json.loads(preset("tiny").to_json())
    data["flow"]["widht"] = 3
    with pytest.raises(ValueError, match="widht"):
        MichiConfig.from_dict(data)


def test_unknown_preset_names_list_the_choices():
    with pytest.raises(ValueError, match="michi-530m"):
        preset("huge")
