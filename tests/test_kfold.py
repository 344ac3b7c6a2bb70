"""The fair k-fold protocol (iadbe/benchmark/kfold.py): every labelled image tested once by models that never
saw it, the anomaly track never trained on a defect, the same validation and test data in both tracks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.test_unet import TIRE, needs_tire


def _splits(normals: int = 30, defects: dict[str, int] | None = None, val_defects: int = 4,
            root: Path = Path("/data")) -> Any:
    from iadbe.data.samples import SYNTHETIC_TYPE, DatasetSplits, Sample

    defects = defects or {"crack": 7, "hole": 5}
    train = [Sample(root / f"train/good/{i}.png", 0) for i in range(normals)]
    val = [Sample(root / f"val/good/{i}.png", 0) for i in range(6)]
    val += [Sample(root / f"val/syn/{i}.png", 1, root / f"val/syn/{i}_m.png", SYNTHETIC_TYPE) for i in range(3)]
    val += [Sample(root / f"train/defect/{i}.png", 1, root / f"train/defect/{i}_m.png", "scratch")
            for i in range(val_defects)]  # labelled defects outside the test set (a YOLO export's train split)
    test = [Sample(root / f"test/good/{i}.png", 0) for i in range(9)]
    test += [Sample(root / f"test/{kind}/{i}.png", 1, root / f"test/{kind}/{i}_m.png", kind)
             for kind, count in defects.items() for i in range(count)]
    return DatasetSplits("toy", root, "toy", "mvtec", train, val, test, "val normals + synthetic")


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_every_labelled_image_is_in_exactly_one_test_fold(folds: int) -> None:
    from iadbe.benchmark.kfold import assign_folds, fold_splits, labelled_images

    splits = _splits()
    labelled = labelled_images(splits)
    assert len(labelled) == len(splits.test) + 4  # the synthetic validation anomalies are not labelled
    tested = [s.image for k in range(folds) for s in fold_splits(splits, k, folds).anomaly.test]
    assert sorted(tested) == sorted(s.image for s in labelled)  # each once: no defect in two test folds
    sizes = [len(part) for part in assign_folds(labelled, folds, splits.root)]
    assert max(sizes) - min(sizes) <= 1
    for part in assign_folds(labelled, folds, splits.root):  # stratified: each defect type spread over the folds
        assert Counter(s.defect_type for s in part)["crack"] in (7 // folds, -(-7 // folds))


def test_no_test_image_is_in_its_models_training_or_validation() -> None:
    from iadbe.benchmark.kfold import fold_splits

    splits = _splits()
    for k in range(3):
        fold = fold_splits(splits, k, 3, seed=1)
        for track in (fold.supervised, fold.anomaly):
            test = {s.image for s in track.test}
            assert not test & {s.image for s in track.train}
            assert not test & {s.image for s in track.val}
            assert not {s.image for s in track.train} & {s.image for s in track.val}
        assert fold.supervised.test == fold.anomaly.test and fold.supervised.val == fold.anomaly.val
        assert all(not s.is_anomalous for s in fold.anomaly.train)  # anomaly track: normal images only
        assert sum(s.is_anomalous for s in fold.supervised.train) >= 6  # supervised: most of the other folds' defects
        assert {s.image for s in fold.anomaly.train} < {s.image for s in fold.supervised.train}
        real = [s for s in fold.anomaly.val if s.is_anomalous]
        assert real and all(s.defect_type != "synthetic_perlin" for s in real)  # validation defects are real
        # thresholds weigh them by the training folds' defect share (the folds are stratified: the test fold's)
        rest = [s for j in range(3) if j != k for s in fold_splits(splits, j, 3, seed=1).anomaly.test]
        assert fold.anomaly.defect_share == pytest.approx(sum(s.is_anomalous for s in rest) / len(rest))
        assert abs(fold.anomaly.defect_share - sum(s.is_anomalous for s in track.test) / len(track.test)) < 0.1


def test_folds_are_seeded_and_the_normal_cap_is_shared() -> None:
    from iadbe.benchmark.kfold import fold_splits

    splits = _splits()
    first, again = fold_splits(splits, 1, 3, seed=4, max_train_images=10), fold_splits(splits, 1, 3, seed=4,
                                                                                           max_train_images=10)
    assert first == again
    assert [s.image for s in fold_splits(splits, 1, 3, seed=5).anomaly.test] != [s.image for s in first.anomaly.test]
    normals = [s for s in first.supervised.train if not s.is_anomalous and "train/good" in str(s.image)]
    assert len(first.anomaly.train) == 10 and normals == first.anomaly.train


def test_the_same_folds_wherever_the_data_lies() -> None:
    from iadbe.benchmark.kfold import fold_splits
    from iadbe.data.supervised import supervised_splits

    def relative(samples: Any, root: Path) -> list[str]:
        return sorted(s.image.relative_to(root).as_posix() for s in samples)

    here, there = Path("/data"), Path("/mnt/other/checkout/../shared/data")
    for k in range(3):  # a checkout elsewhere dealt other folds when the absolute paths were hashed
        a = fold_splits(_splits(root=here), k, 3, seed=2, max_train_images=10)
        b = fold_splits(_splits(root=there), k, 3, seed=2, max_train_images=10)
        for part in ("test", "val", "train"):
            assert relative(getattr(a.supervised, part), here) == relative(getattr(b.supervised, part), there)
    moved_here, moved_there = supervised_splits(_splits(root=here), 1), supervised_splits(_splits(root=there), 1)
    assert relative(moved_here.train, here) == relative(moved_there.train, there)


def test_bad_fold_settings_are_refused() -> None:
    from iadbe.benchmark.kfold import fold_splits
    from iadbe.errors import SettingsError

    with pytest.raises(SettingsError, match="between 2 and 10"):
        fold_splits(_splits(), 0, 1)
    with pytest.raises(SettingsError, match="fold must be between 0 and 2"):
        fold_splits(_splits(), 3, 3)
    with pytest.raises(SettingsError, match="at least 3 labelled defects"):
        fold_splits(_splits(defects={"crack": 1}, val_defects=0), 0, 3)


def test_a_kfold_plan_names_every_fold_and_model() -> None:
    from iadbe.benchmark import plan_runs

    specs = plan_runs(["padim", "unet_lite0"], "mvtec3d", "/data", ["tire"], mode="kfold", folds=3)
    assert [s.run_id for s in specs[:3]] == ["kfold__padim__tire__fold1of3__seed0", "kfold__unet_lite0__tire__fold1of3__seed0",
                                             "kfold__padim__tire__fold2of3__seed0"]
    assert len({s.run_id for s in specs}) == 6


@pytest.mark.slow
@needs_tire
def test_a_tiny_real_kfold_run_tests_every_defect_once_and_writes_the_table(tmp_path: Path) -> None:
    from iadbe import constants
    from iadbe.benchmark import run_benchmark
    from iadbe.benchmark.report import comparison_markdown
    from iadbe.data import load_dataset

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "IADBE_HOME", tmp_path / "home")
        result = run_benchmark(["padim", "unet_lite0"], "mvtec3d", TIRE, ["tire"], mode="kfold", folds=2,
                               image_size=64, max_train_images=6, max_train_minutes=0.2, max_epochs=1,
                               timing_images=1, out=tmp_path / "bench")
        labelled = load_dataset("mvtec3d", TIRE, seed=0).test
    assert not result.failed and len(result.ran) == 4
    by_model: dict[str, list[str]] = {}
    for record in result.records:
        by_model.setdefault(record["model"], []).extend(record["tested_images"])
        assert not set(record["tested_images"]) & set(record["trained_images"])
        defects = [p for p in record["trained_images"] if "/test/" in p and "/good/" not in p]
        assert bool(defects) == (record["model"] == "unet_lite0")  # PaDiM never trains on a defect
    for tested in by_model.values():  # every labelled image tested once per model
        assert sorted(tested) == sorted(str(s.image) for s in labelled)
    report = result.files["md"].read_text(encoding="utf-8")
    assert "Supervised vs anomaly detectors, k-fold" in report and "| U-Net Lite0 (supervised) | supervised | 2 |" in report
    assert "The study's Cardboard row" in comparison_markdown([tmp_path / "bench"])


def _record(model: str, fold: int, f1: float, supervised: bool) -> dict[str, Any]:
    metrics = {"image_F1": f1, "image_F1_oracle": f1 + 0.1, "image_AUROC": 0.8, "pixel_F1": 0.3, "pixel_AUROC": 0.9}
    return {"run_id": f"kfold__{model}__tire__fold{fold + 1}of3__seed0", "status": "ok", "mode": "kfold",
            "model": model, "category": "tire", "seed": 0, "fold": fold, "folds": 3, "backbone": "b",
            "metrics": metrics, "training_time_s": 10.0 + fold, "epochs_trained": 1.0, "supervised": supervised,
            "fit": {"stopped_by_time_cap": supervised}, "inference_ms": {"openvino": {"median_ms": 5.0}},
            "spec": {"folds": 3, "seed": 0, "image_size": 128, "max_train_images": 40, "max_train_minutes": 1.0},
            "machine": {"cpus": 2, "torch_threads": 2}}


def test_the_kfold_table_gives_mean_and_spread_over_folds_and_states_the_caps() -> None:
    from iadbe.benchmark.kfold_report import kfold_markdown
    from iadbe.benchmark.report import aggregate

    records = [_record("padim", k, f1, False) for k, f1 in enumerate((0.5, 0.6, 0.7))]
    records += [_record("unet_lite0", k, f1, True) for k, f1 in enumerate((0.8, 0.8, 0.8))]
    text = kfold_markdown(aggregate(records), records, compare_study=True)
    assert "| PaDiM | anomaly | 3 | 60.00 ± 10.00 | 70.00 ± 10.00 |" in text
    assert "| U-Net Lite0 (supervised) | supervised | 3 | 80.00 ± 0.00 |" in text
    assert "| 11.0 ± 1.0 | 5.0 ± 0.0 |" in text  # training s per fold, OpenVINO ms
    assert "normal training images capped at 40; training time cap 1.0 min per fold; stopped by the cap: unet_lite0" in text
    assert "| image F1 (oracle) | 73.68 | 85.71 |" in text and "the data differ" in text
    assert "Cardboard row" not in kfold_markdown(aggregate(records), records, compare_study=False)


def test_the_benchmark_tab_shows_the_kfold_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iadbe.app import benchmark_tab
    from iadbe.benchmark.runs import write_record

    monkeypatch.setattr(benchmark_tab, "result_roots", lambda workspace=None: {"results": tmp_path})
    assert "No k-fold runs yet" in benchmark_tab.kfold_comparison()
    for k in range(3):
        for model, supervised in (("padim", False), ("unet_lite0", True)):
            record = _record(model, k, 0.5 + 0.1 * k, supervised)
            write_record(tmp_path / "kfold" / "tire" / "runs" / f"{record['run_id']}.json", record)
    shown = benchmark_tab.kfold_comparison()
    assert "### tire" in shown and "| U-Net Lite0 (supervised) | supervised | 3 |" in shown
    assert "The study's Cardboard row" in shown
