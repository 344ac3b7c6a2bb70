"""The detector registry: the study's models, their defaults, layer mapping and runs-here reasons."""

import re

import pytest

from iadbe.errors import SettingsError
from iadbe.models import all_specs, check_availability, get_spec, list_models, resolve_config
from iadbe.models.layers import map_layers

STUDY_MODELS = {"cfa", "cflow", "csflow", "dfkde", "dfm", "draem", "dsr", "fastflow", "fre", "ganomaly", "padim",
                "patchcore", "reverse_distillation", "rkde", "stfpm", "uflow"}


def test_every_study_model_and_the_extra_three_are_registered():
    names = {spec.name for spec in all_specs()}
    assert STUDY_MODELS <= names
    assert {"efficient_ad", "supersimplenet", "dinomaly"} <= names
    assert {spec.name for spec in all_specs() if spec.in_study} == STUDY_MODELS


def test_every_model_says_whether_it_runs_here_with_a_reason():
    rows = {row.model: row for row in list_models()}
    assert set(rows) == {spec.name for spec in all_specs()}
    for row in rows.values():
        assert row.reason
    assert not rows["rkde"].runs_here and "removed" in rows["rkde"].reason


def test_aliases():
    assert get_spec("RD").name == "reverse_distillation"
    assert get_spec("PatchCore").name == "patchcore"
    with pytest.raises(SettingsError, match="known models"):
        get_spec("nope")


def test_study_layers_map_by_stride_onto_lite0():
    assert map_layers("tf_efficientnet_lite0", ["layer1", "layer2", "layer3", "layer4"]) == [
        "blocks.1", "blocks.2", "blocks.4", "blocks.6"]
    assert map_layers("resnet18", ["layer2"]) == ["layer2"]


def test_study_defaults_survive_into_the_config():
    config = resolve_config("patchcore", "tf_efficientnet_lite0")
    assert config.init_args["coreset_sampling_ratio"] == 0.1
    assert config.init_args["num_neighbors"] == 9
    assert config.init_args["layers"] == ["blocks.2", "blocks.4"]
    assert config.mean == (0.5, 0.5, 0.5)  # the backbone's own statistics
    assert "pre_trained" not in config.init_args


def test_fre_input_dim_is_derived_from_the_backbone():
    config = resolve_config("fre", "tf_efficientnet_lite0", 256)
    assert config.init_args["input_dim"] == 112 * 8 * 8


@pytest.mark.parametrize("size", [0, -256, 100, 100000])
def test_bad_image_sizes(size):
    with pytest.raises(SettingsError):
        resolve_config("padim", "tf_efficientnet_lite0", size)


def test_bad_epochs():
    with pytest.raises(SettingsError):
        resolve_config("stfpm", "tf_efficientnet_lite0", 256, max_epochs=-1)


def test_fixed_backbone_models_use_the_generalised_class_for_other_backbones():
    from iadbe.models.availability import check_original_availability
    from iadbe.models.factory import choose_implementation

    spec = get_spec("fastflow")
    original = check_original_availability(spec, "tf_efficientnet_lite0")
    assert not original.runs_here and "accepts only" in original.reason  # anomalib's own class refuses
    config = resolve_config("fastflow", "tf_efficientnet_lite0")
    assert choose_implementation(spec, "tf_efficientnet_lite0") == "iadbe"
    assert config.extra["implementation"] == "iadbe"
    assert "implementation" not in resolve_config("padim", "tf_efficientnet_lite0").extra  # anomalib's own


def test_lite_models_run_here_once_weights_are_converted():
    from iadbe.backbones import ensure_offline_backbones

    ensure_offline_backbones()
    assert check_availability(get_spec("padim")).runs_here
    assert check_availability(get_spec("patchcore")).runs_here


@pytest.mark.parametrize(("text", "expected"), [("256", 256), ("384x288", (384, 288)), ("320 X 256", (320, 256))])
def test_cli_image_size_takes_a_side_or_height_by_width(text, expected):
    from iadbe.cli import image_size_arg

    assert image_size_arg(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "256x", "256x256x3", "1.5"])
def test_cli_image_size_refuses_nonsense(text):
    import argparse

    from iadbe.cli import image_size_arg

    with pytest.raises(argparse.ArgumentTypeError, match="expected a size like 256 or 384x288"):
        image_size_arg(text)


@pytest.mark.parametrize("text", ["12x3", "-256", "100"])
def test_cli_out_of_range_image_size_gets_the_library_message(text, tmp_path, capsys):
    from iadbe.cli import main

    code = main(["train", "--model", "padim", "--dataset", "folder", "--root", str(tmp_path),
                 "--image-size", text, "--out", str(tmp_path / "m")])
    assert code == 2
    assert re.search(r"^error: image size must be", capsys.readouterr().err, re.MULTILINE)


def test_cli_settings_are_read_as_json_where_they_parse():
    from iadbe.cli import parse_settings

    assert parse_settings(["coreset_sampling_ratio=0.04", "num_neighbors=3", 'layers=["blocks.2", "blocks.4"]',
                           "backbone=resnet18", "enable_sspcab=true", "dtd_dir=/data/dtd=x"]) == {
        "coreset_sampling_ratio": 0.04, "num_neighbors": 3, "layers": ["blocks.2", "blocks.4"],
        "backbone": "resnet18", "enable_sspcab": True, "dtd_dir": "/data/dtd=x"}


@pytest.mark.parametrize("item", ["nope", "=3", "two words=1", "1x=2"])
def test_cli_malformed_setting_is_refused(item):
    from iadbe.cli import parse_settings
    from iadbe.errors import SettingsError

    with pytest.raises(SettingsError, match="--set expects KEY=VALUE"):
        parse_settings([item])


def test_a_setting_reaches_the_detector_config():
    from iadbe.models.factory import resolve_config

    config = resolve_config("patchcore", "tf_efficientnet_lite0", coreset_sampling_ratio=0.04, num_neighbors=3)
    assert config.init_args["coreset_sampling_ratio"] == 0.04 and config.init_args["num_neighbors"] == 3


def test_unknown_setting_is_refused_naming_the_detectors_settings(tmp_path, capsys):
    """Refused before any data is read, with the names the detector does take (not a TypeError from
    model construction)."""
    from iadbe.cli import main

    code = main(["train", "--model", "patchcore", "--dataset", "folder", "--root", str(tmp_path / "absent"),
                 "--set", "coreset_ratio=0.04", "--out", str(tmp_path / "m")])
    assert code == 2
    err = capsys.readouterr().err
    assert "PatchCore has no setting 'coreset_ratio'; its settings: backbone, coreset_max_patches, coreset_method, coreset_sampling_ratio, layers" in err
    assert "pre_trained" not in err and "pre_processor" not in err


def test_detectors_that_train_for_epochs_get_an_interactive_time_cap_and_one_pass_ones_none():
    from iadbe.models import all_specs, get_spec
    from iadbe.models.registry import INTERACTIVE_TIME_CAP_MINUTES

    for name in ("draem", "dsr", "csflow", "efficient_ad", "cflow"):  # hours at the study's epochs on a CPU
        assert get_spec(name).interactive_time_cap == INTERACTIVE_TIME_CAP_MINUTES
    for spec in all_specs():
        assert (spec.interactive_time_cap is None) == (spec.max_epochs == 1), spec.name


def test_the_training_tab_prefills_the_detectors_cap_and_reads_empty_as_it():
    import gradio as gr

    from iadbe.app.common import minutes_cap
    from iadbe.app.training_tab import default_time_cap, time_cap_hint

    value, note = time_cap_hint("cflow")
    assert value == default_time_cap("cflow") > 0 and "50 epochs" in note and "Set 0" in note
    assert time_cap_hint("padim")[0] is None and "one pass" in time_cap_hint("padim")[1]
    assert time_cap_hint("no-such-model") == (None, "") and default_time_cap("no-such-model") is None
    assert minutes_cap(None, default=5.0) == 5.0 and minutes_cap("", default=5.0) == 5.0
    assert minutes_cap(0, default=5.0) is None  # 0: the study's epochs
    with pytest.raises(gr.Error):
        minutes_cap(-1, default=5.0)


def test_the_model_card_says_how_far_from_the_studys_epochs_a_run_got():
    from iadbe.model_card import build_model_card, epochs_summary

    meta = {"model": "cflow", "epochs_trained": 2.8, "study_epochs": 50, "max_train_minutes": 5.0,
            "detector": {"max_epochs": 50}, "metrics": {"image_AUROC": 0.7}}
    assert epochs_summary(meta) == "2.8 of the study's 50 epochs (6 %), stopped by the 5-minute cap"
    assert "| Epochs trained | 2.8 of the study's 50 epochs" in str(build_model_card(meta))
    done = {**meta, "epochs_trained": 50, "max_train_minutes": None}
    assert epochs_summary(done) == "50 of the study's 50 epochs (100 %)"
    assert epochs_summary({"model": "stfpm", "epochs_trained": 5}) .startswith("5 of the study's 100 epochs")
    assert epochs_summary({"model": "padim", "epochs_trained": None}) is None
    assert "Epochs trained" not in str(build_model_card({"model": "padim", "metrics": {}}))
