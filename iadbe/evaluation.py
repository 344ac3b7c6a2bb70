"""Evaluation: run a model over samples, score its outputs against ground truth, re-evaluate a stored model.

Used by training (validation outputs for the calibration, the whole test set for the metrics),
``iadbe test``, the benchmark worker and the app's Training tab (through ``train``). Images are read
as inference reads them (:mod:`iadbe.images`), masks resized to the model's size (nearest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

#: progress(fraction in [0, 1], message)
ProgressFn = Callable[[float, str], None]


@dataclass
class Outputs:
    """Raw model outputs over a list of samples, at the model's image size."""

    scores: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W)
    labels: np.ndarray  # (N,)
    masks: np.ndarray | None  # (N, H, W) bool, None when the split has no masks
    paths: list[str]


def _no_progress(fraction: float, message: str) -> None:
    del fraction, message


def torch_runner(graph: Any, device: str = "cpu") -> Any:
    """A backend (``run(batch) -> (scores, maps)``) over an inference graph just built (:mod:`iadbe.graph`)."""
    from iadbe.inference.backends import TorchBackend

    return TorchBackend(graph, device)


def run_backend(
    backend: Any,
    samples: Sequence[Any],
    image_size: tuple[int, int],
    batch_size: int = 16,
    progress: ProgressFn | None = None,
) -> Outputs:
    """Raw outputs of a backend (``iadbe.inference.backends``) over ``samples``, images read as
    inference reads them."""
    from iadbe.data.training_set import read_mask
    from iadbe.images import load_image, to_batch

    progress = progress or _no_progress
    scores, maps, masks, labels, paths = [], [], [], [], []
    has_masks = any(getattr(sample, "mask", None) for sample in samples)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        images = [load_image(sample.image) for sample in chunk]
        score, amap = backend.run(to_batch(images, image_size))
        scores.append(score)
        maps.append(amap)
        for sample in chunk:
            labels.append(int(sample.label))
            paths.append(str(sample.image))
            if has_masks:
                masks.append(read_mask(sample, image_size))
        progress(min(1.0, (start + len(chunk)) / max(1, len(samples))), f"{start + len(chunk)}/{len(samples)}")
    return Outputs(
        scores=np.concatenate(scores) if scores else np.zeros(0, np.float32),
        maps=np.concatenate(maps) if maps else np.zeros((0, *image_size), np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        masks=np.stack(masks) if masks else None,
        paths=paths,
    )


def score_outputs(outputs: Outputs, calibration: Any, segmentation: bool) -> dict[str, float]:
    from iadbe.metrics import evaluate

    if not segmentation:
        return evaluate(outputs.scores, outputs.labels, calibration)
    return evaluate(outputs.scores, outputs.labels, calibration, outputs.maps, outputs.masks)


@dataclass
class Evaluation:
    """A stored model re-evaluated on a dataset's test set, and what it ran on."""

    metrics: dict[str, float]
    report: str  # the dataset's report (splits and counts)
    backend: str  # torch / openvino
    precision: str  # f32, bf16, f16: auto resolved (iadbe/precision.py)


def evaluate_model_dir(
    model_ref: str | Path,
    dataset: str,
    root: str | Path,
    category: str | None = None,
    backend: str = "auto",
    progress: ProgressFn | None = None,
    false_alarm_rate: float | None = None,
    pixel_false_alarm_rate: float | None = None,
    precision: str | None = None,
) -> Evaluation:
    """Re-evaluate a stored model on a dataset's whole test set.

    ``false_alarm_rate`` / ``pixel_false_alarm_rate`` move the stored thresholds first
    (:meth:`~iadbe.calibration.Calibration.with_false_alarm_rate`). ``precision`` as in ``load_model``
    (default auto: the fastest precision the model's export check kept, so numbers may differ from f32's
    within that check's bounds; ``"f32"`` reproduces the training run's)."""
    from iadbe.data import load_dataset
    from iadbe.inference import load_model

    model = load_model(model_ref, backend=backend, precision=precision)
    calibration = model.calibration.with_false_alarm_rate(false_alarm_rate, pixel_false_alarm_rate)
    splits = load_dataset(dataset, root, category)
    outputs = run_backend(model.backend, splits.test, model.config.image_size, progress=progress)
    metrics = score_outputs(outputs, calibration, model.config.segmentation)
    return Evaluation(metrics, splits.report(), model.backend_name, model.backend.precision)


def format_metrics(metrics: dict[str, float]) -> str:
    """A two-column table of metrics in percent, in the study's order."""
    order = ["image_AUROC", "image_AUPR", "image_F1", "image_F1_oracle", "image_false_alarm_rate", "image_miss_rate",
             "pixel_AUROC", "pixel_AUPR", "pixel_F1", "pixel_F1_oracle", "pixel_false_alarm_rate", "pixel_miss_rate",
             "pixel_AUPRO"]
    rows = [(key, metrics[key]) for key in order if key in metrics]
    rows += [(key, value) for key, value in metrics.items() if key not in order]
    width = max((len(key) for key, _ in rows), default=6)
    lines = [f"{'metric':<{width}}  value (%)", f"{'-' * width}  ---------"]
    lines += [f"{key:<{width}}  {100 * value:9.2f}" for key, value in rows]
    return "\n".join(lines)
