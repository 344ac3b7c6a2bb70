"""Train a detector, calibrate it on validation data, evaluate it on the whole test set, store it.

``train(...)`` is the one entry point used by the CLI, the app, the benchmark and the model zoo.
Validation (thresholds, score ranges) never sees a test image; every test image is scored
(anomalib's ``Folder`` would move half of them to validation by default).
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from iadbe import constants
from iadbe.errors import SettingsError

logger = logging.getLogger(__name__)

from iadbe.evaluation import ProgressFn

# share of the progress bar per stage
_FIT, _CALIBRATE, _TEST, _EXPORT = 0.70, 0.08, 0.17, 0.05


@dataclass
class TrainResult:
    """What a training run produced."""

    model_dir: Path
    metrics: dict[str, float]
    meta: dict[str, Any]
    dataset_report: str
    training_time_s: float
    test_outputs: Any = field(default=None, repr=False)  # iadbe.evaluation.Outputs

    def metrics_table(self) -> str:
        from iadbe.evaluation import format_metrics

        return format_metrics(self.metrics)


def _no_progress(fraction: float, message: str) -> None:
    del fraction, message


def train(
    model: str,
    dataset: str,
    root: str | Path,
    *,
    category: str | None = None,
    backbone: str | None = None,
    image_size: int | tuple[int, int] = 256,
    max_epochs: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    name: str | None = None,
    overwrite: bool = False,
    max_train_images: int | None = None,
    max_train_minutes: float | None = None,
    batch_size: int | None = None,
    export: bool = True,
    progress: ProgressFn | None = None,
    overrides: dict[str, Any] | None = None,
    splits: Any | None = None,
    false_alarm_rate: float | None = None,
    pixel_false_alarm_rate: float | None = None,
) -> TrainResult:
    """Train ``model`` on a local dataset and write a model directory.

    Args:
        model: registry name (``padim``, ``patchcore``, ...; see ``iadbe models --all``).
        dataset: ``mvtec|mvtec3d|btech|kolektor|visa|folder``.
        root: dataset root folder (or a .zip for ``folder``).
        out: model directory to write (default: a new folder in the local model store).
        max_train_images: use a seeded subset of the normal training images (quick runs, tests).
        max_train_minutes: stop training after this long, at the end of the running batch (Lightning's
            ``max_time``); the epochs actually trained are recorded in iadbe.json as ``epochs_trained``.
        progress: called with (fraction, message) as work advances.
        splits: ready-made :class:`~iadbe.data.DatasetSplits` to use instead of reading ``dataset``/``root``
            (the benchmark's unified mode trains on several categories together this way).
        false_alarm_rate: share of good parts the calibrated image threshold may flag (default
            :data:`iadbe.calibration.DEFAULT_FALSE_ALARM_RATE`); ``pixel_false_alarm_rate`` the same for pixels.
    Returns:
        The :class:`TrainResult`; the model directory holds iadbe.json, weights.safetensors and
        openvino/model.{xml,bin}.
    """
    from iadbe import backbones, store
    from iadbe.calibration import check_false_alarm_rate
    from iadbe.data import load_dataset
    from iadbe.data.supervised import check_training_samples, supervised_splits
    from iadbe.fitting import fit_detector
    from iadbe.metrics import confusion
    from iadbe.models import check_availability, create_detector, get_spec, resolve_config

    progress = progress or _no_progress
    spec = get_spec(model)
    config = resolve_config(spec.name, backbone, image_size, max_epochs, **(overrides or {}))
    if config.backbone:
        # installs the Lite weights into the current HF cache, or raises with the available backbones
        backbones.require_backbone(config.backbone)
    availability = check_availability(spec, config.backbone)
    if not availability.runs_here:
        from iadbe.errors import ModelUnavailableError

        raise ModelUnavailableError(f"{spec.display_name} cannot run here: {availability.reason}")
    check_false_alarm_rate(false_alarm_rate)
    check_false_alarm_rate(pixel_false_alarm_rate, "pixel false-alarm rate")
    if batch_size is not None and not 1 <= batch_size <= 512:
        raise SettingsError(f"batch size must be between 1 and 512, got {batch_size}")
    if max_train_images is not None and max_train_images < 1:
        raise SettingsError(f"max train images must be positive, got {max_train_images}")
    if max_train_minutes is not None and not max_train_minutes > 0:
        raise SettingsError(f"max train minutes must be positive, got {max_train_minutes}")

    store.check_writable(Path(out).expanduser().absolute().parent if out else None)  # fail before a long run
    progress(0.0, "reading the dataset")
    if splits is None:
        splits = load_dataset(dataset, root, category, seed=seed)
    if spec.supervised:
        splits = supervised_splits(splits, seed)
    normals = [s for s in splits.train if not s.is_anomalous]
    chosen = _subset(normals, max_train_images, seed)
    train_samples = chosen + [s for s in splits.train if s.is_anomalous]
    report = splits.report()
    if len(chosen) != len(normals):
        report += f"\ntraining on a seeded subset of {len(chosen)} of {len(normals)} normal images"
    logger.info("%s", report)
    check_training_samples(train_samples, spec.supervised, spec.display_name)
    _check_train_size(config, sum(not s.is_anomalous for s in train_samples))

    _seed_everything(seed)
    module = create_detector(config, pre_trained=True)
    started = time.perf_counter()
    fitted = fit_detector(spec, module, train_samples, splits.val, config, batch_size or config.train_batch_size,
                          lambda fraction, message: progress(_FIT * fraction, message), max_train_minutes, seed)
    training_time = time.perf_counter() - started

    from iadbe.evaluation import run_backend, score_outputs, torch_runner
    from iadbe.graph import build_inference_graph

    graph = build_inference_graph(fitted.model, config)
    runner = torch_runner(graph)
    progress(_FIT, "calibrating thresholds on validation data")
    val = run_backend(runner, splits.val, config.image_size, progress=_span(progress, _FIT, _CALIBRATE, "validation"))
    calibration = calibrate_outputs(val, splits.val, config.segmentation, false_alarm_rate, pixel_false_alarm_rate,
                                    default_pixel_rate=spec.pixel_false_alarm_rate, defect_share=splits.defect_share)
    progress(_FIT + _CALIBRATE, "evaluating on the whole test set")
    test = run_backend(runner, splits.test, config.image_size,
                     progress=_span(progress, _FIT + _CALIBRATE, _TEST, "test"))
    metrics = score_outputs(test, calibration, config.segmentation)

    model_name = name or _default_name(spec.name, config.backbone, splits.name, splits.category)
    target = Path(out) if out else constants.MODEL_STORE / store.safe_name(model_name)
    meta = {
        "name": model_name,
        "model": spec.name,
        "display_name": spec.display_name,
        "detector": config.to_dict(),
        "backbone": config.backbone,
        "image_size": list(config.image_size),
        "normalization": {"mean": list(config.mean), "std": list(config.std)},
        "postprocess": calibration.to_dict(),
        "dataset": splits.to_dict() if hasattr(splits, "to_dict") else {"name": splits.name},
        "validation": splits.val_source,
        "calibration": calibration_record(calibration, splits.val, val),
        "metrics": metrics,
        "test_counts": {"images": int(len(test.labels)), "anomalous": int(test.labels.sum()),
                        **confusion(test.scores, test.labels, calibration.image_threshold)},
        "train_images": len(train_samples),
        "train_defects": sum(s.is_anomalous for s in train_samples),
        "seed": seed,
        "training_time_s": round(training_time, 3),
        "epochs_trained": fitted.epochs_trained,
        **({"fit": fitted.record} if fitted.record else {}),
        "study_epochs": spec.max_epochs,
        "max_train_minutes": max_train_minutes,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "machine": machine_info(),
    }
    progress(_FIT + _CALIBRATE + _TEST, "writing the model directory and exporting to OpenVINO")
    with store.staged_model_dir(target, overwrite=overwrite) as staging:
        store.save_weights(fitted.model.state_dict(), staging / store.WEIGHTS_FILE)
        if export:
            from iadbe.export import export_openvino
            from iadbe.precision import check_export

            xml = export_openvino(graph, config.image_size, staging / "openvino")
            progress(_FIT + _CALIBRATE + _TEST, "checking lower precisions on the validation images")
            meta["precision"] = check_export(xml, splits.val, config.image_size, calibration, graph)
        store.write_config(staging, meta)
    progress(1.0, "done")
    meta = store.read_config(target)
    return TrainResult(target, metrics, meta, report, training_time, test)


def calibrate_outputs(val: Any, samples: Sequence[Any], segmentation: bool,
                      false_alarm_rate: float | None = None, pixel_false_alarm_rate: float | None = None,
                      default_pixel_rate: float | None = None, defect_share: float | None = None) -> Any:
    """The :class:`~iadbe.calibration.Calibration` of validation outputs (synthetic anomalies told apart);
    ``defect_share``: the share of defects in the data the real validation defects came from."""
    from iadbe.calibration import ValidationSet, calibrate

    validation = ValidationSet(val.scores, val.labels, val.maps if segmentation else None,
                               val.masks if segmentation else None, synthetic_flags(samples), defect_share)
    return calibrate(validation, false_alarm_rate, pixel_false_alarm_rate, default_pixel_rate=default_pixel_rate)


def synthetic_flags(samples: Sequence[Any]) -> np.ndarray:
    """(N,) bool: which samples are synthetic anomalies (not real images of the dataset)."""
    from iadbe.data.samples import SYNTHETIC_TYPE

    return np.asarray([getattr(s, "defect_type", "") == SYNTHETIC_TYPE for s in samples], bool)


def calibration_record(calibration: Any, samples: Sequence[Any], val: Any) -> dict[str, Any]:
    """What iadbe.json says of the calibration: the rule, the rates, the images and how they scored."""
    flagged = val.scores > calibration.image_threshold
    labels = val.labels.astype(bool)
    kinds = synthetic_flags(samples)
    normal = [s for s, bad in zip(samples, labels) if not bad]
    real = [s for s, bad, made in zip(samples, labels, kinds) if bad and not made]

    def share(selected: np.ndarray) -> float | None:
        return round(float(flagged[selected].mean()), 4) if selected.any() else None

    return {
        "rule": calibration.rule,
        "false_alarm_rate": calibration.false_alarm_rate,
        "pixel_false_alarm_rate": calibration.pixel_false_alarm_rate,
        "expected_false_alarm_rate_on_good_parts": calibration.false_alarm_rate,
        "defect_share": calibration.defect_share,
        "validation_false_alarm_rate": share(~labels),
        "validation_detection_rate": {"real": share(labels & ~kinds), "synthetic": share(labels & kinds)},
        "notes": list(calibration.notes),
        "images": {"normal": [str(s.image) for s in normal], "real_defects": [str(s.image) for s in real],
                   "synthetic": int(kinds.sum())},
        "validation_scores": {"normal": [round(float(v), 6) for v in val.scores[~labels]],
                              "real_defects": [round(float(v), 6) for v in val.scores[labels & ~kinds]],
                              "synthetic": [round(float(v), 6) for v in val.scores[labels & kinds]]},
    }


def _span(progress: ProgressFn, start: float, width: float, label: str) -> ProgressFn:
    return lambda fraction, message: progress(start + width * fraction, f"{label}: {message}")


def minimum_train_images(config: Any) -> int:
    """Fewest normal images a detector can be fitted on: its spec's ``min_train_images`` hook, else 2 (a
    covariance or a PCA needs more than one)."""
    from iadbe.models import get_spec

    hook = get_spec(config.model).hook("min_train_images")
    return hook(config.init_args) if hook is not None else 2


def _check_train_size(config: Any, count: int) -> None:
    needed = minimum_train_images(config)
    if count < needed:
        raise SettingsError(f"{config.model} needs at least {needed} training images (normal ones), got {count}")


def _subset(samples: Sequence[Any], limit: int | None, seed: int) -> list[Any]:
    if limit is None or limit >= len(samples):
        return list(samples)
    chosen = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[index] for index in chosen]


def _seed_everything(seed: int) -> None:
    import lightning.pytorch as pl

    pl.seed_everything(seed, workers=True, verbose=False)


def _default_name(model: str, backbone: str | None, dataset: str, category: str | None) -> str:
    parts = [model, (backbone or "").replace("tf_efficientnet_", ""), dataset, category or ""]
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return "-".join(part for part in parts if part) + "-" + stamp


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("iadbe", "anomalib", "torch", "timm", "openvino", "lightning"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def machine_info() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info
