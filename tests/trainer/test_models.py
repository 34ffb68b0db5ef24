"""Model presets, heads, normalisation and where encoder weights come from."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from trainer.errors import ModelConfigError
from trainer.models import (
    FEATURE_CHANNELS,
    PRESETS,
    FaceParseNet,
    ModelConfig,
    build_model,
    get_preset,
)


def test_paper_preset_is_the_papers_setting():
    paper = get_preset("paper")
    assert paper.encoder_name == "resnet50"
    assert paper.input_size == 512
    assert paper.decoder_channels == (256, 128, 64, 32, 16)  # smp's UNet++ default


def test_every_preset_keeps_the_two_stage_design():
    for name, config in PRESETS.items():
        model = FaceParseNet(config, heads=("reconstruction", "parsing"))
        assert config.decoder_channels[-1] == FEATURE_CHANNELS, name
        for head, out in (("reconstruction", 3), ("parsing", config.num_classes)):
            conv = model.heads[head]
            assert isinstance(conv, torch.nn.Conv2d), (name, head)
            assert (conv.in_channels, conv.out_channels) == (FEATURE_CHANNELS, out)


def test_backbone_maps_an_image_to_16_feature_maps_and_heads_to_their_outputs():
    model = build_model(get_preset("tiny"), heads=("reconstruction", "parsing")).eval()
    x = model.normalize(torch.rand(2, 3, 64, 64))
    with torch.no_grad():
        assert model.features(x).shape == (2, 16, 64, 64)
        assert model(x, head="reconstruction").shape == (2, 3, 64, 64)
        assert model(x, head="parsing").shape == (2, 11, 64, 64)


def test_normalisation_is_part_of_the_config():
    config = get_preset("tiny").with_overrides(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    model = build_model(config)
    out = model.normalize(torch.full((1, 3, 4, 4), 0.75))
    assert torch.allclose(out, torch.ones_like(out))
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ModelConfigError, match="unknown preset 'huge'"):
        get_preset("huge")


def test_default_is_random_init_and_a_local_weights_file_is_loaded(tmp_path):
    config = get_preset("tiny")
    source = build_model(config)
    path = tmp_path / "encoder.safetensors"
    save_file({f"encoder.{k}": v.contiguous() for k, v in source.encoder.state_dict().items()}, path)

    fresh = build_model(config)
    loaded = build_model(config, encoder_weights=str(path))
    name = "_conv_stem.weight" if hasattr(source.encoder, "_conv_stem") else next(
        k for k in source.encoder.state_dict() if k.endswith("weight")
    )
    ref = source.encoder.state_dict()[name]
    assert torch.equal(loaded.encoder.state_dict()[name], ref)
    assert not torch.equal(fresh.encoder.state_dict()[name], ref)


def test_weights_file_that_does_not_fit_the_encoder_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(ModelConfigError, match="does not fit encoder"):
        build_model(get_preset("tiny"), encoder_weights=str(path))
    with pytest.raises(ModelConfigError, match="not a file"):
        build_model(get_preset("tiny"), encoder_weights=str(tmp_path / "missing.safetensors"))


def test_a_corrupt_weights_file_is_one_clear_error(tmp_path):
    path = tmp_path / "encoder.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ModelConfigError, match=r"encoder\.safetensors: not a readable") as caught:
        build_model(get_preset("tiny"), encoder_weights=str(path))
    assert "\n" not in str(caught.value)


def test_pickled_weights_are_refused_with_a_way_to_convert_them(tmp_path):
    import re

    config = get_preset("tiny")
    source = build_model(config)
    pickled = tmp_path / "encoder.pth"
    torch.save({"state_dict": source.encoder.state_dict()}, pickled)
    with pytest.raises(ModelConfigError, match=r"encoder\.pth: this is a pickle .* refused") as caught:
        build_model(config, encoder_weights=str(pickled))
    message = str(caught.value)
    assert "\n" not in message and "weights_only=False" not in message
    # The advice works: run the conversion it gives, then load what it wrote.
    command = re.search(r'python -c "(.*?)"', message).group(1)
    exec(command, {})
    converted = tmp_path / "encoder.safetensors"
    assert f"--encoder-weights {converted}" in message
    loaded = build_model(config, encoder_weights=str(converted))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[key], value), key


def _smp_imagenet_settings(encoder: str) -> tuple[str, str]:
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders[encoder]["pretrained_settings"]["imagenet"]
    return settings["repo_id"], settings["revision"]


def test_imagenet_offline_without_a_cached_copy_fails_fast_with_a_clear_message(
    tmp_path, monkeypatch
):
    from huggingface_hub import constants

    import trainer.models as models

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=2.0: False)
    seen_offline: list[bool] = []
    real_download = __import__("huggingface_hub").hf_hub_download

    def spy(*args, **kwargs):
        # smp's retry loop (~24 s offline) only runs when the hub is not in offline mode.
        seen_offline.append(bool(constants.HF_HUB_OFFLINE))
        return real_download(*args, **kwargs)

    import segmentation_models_pytorch.encoders as smp_encoders

    monkeypatch.setattr(smp_encoders, "hf_hub_download", spy)
    with pytest.raises(ModelConfigError, match="unreachable and no cached copy"):
        build_model(get_preset("tiny"), encoder_weights="imagenet")
    assert seen_offline and all(seen_offline)
    assert constants.HF_HUB_OFFLINE is False  # restored for the rest of the process


def test_imagenet_uses_a_cached_copy_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    import trainer.models as models

    config = get_preset("tiny")
    repo_id, revision = _smp_imagenet_settings(config.encoder_name)
    snapshot = tmp_path / "cache" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    reference = build_model(config).encoder.state_dict()
    save_file({k: v.contiguous() for k, v in reference.items()}, snapshot / "model.safetensors")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=2.0: False)
    model = build_model(config, encoder_weights="imagenet")
    for key, value in reference.items():
        assert torch.equal(model.encoder.state_dict()[key], value), key


@pytest.mark.parametrize("how", ["zip", "legacy"])
def test_a_pickle_named_safetensors_is_still_called_a_pickle(tmp_path, how):
    # A renamed torch.save file must get the pickle advice, not "unreadable safetensors".
    config = get_preset("tiny")
    disguised = tmp_path / "encoder.safetensors"
    state = build_model(config).encoder.state_dict()
    torch.save(state, disguised, _use_new_zipfile_serialization=(how == "zip"))
    with pytest.raises(ModelConfigError, match=r"encoder\.safetensors: .*a pickle") as caught:
        build_model(config, encoder_weights=str(disguised))
    assert "convert it once" in str(caught.value)
