"""Batch prediction to files: one call for the CLI's ``iadbe predict`` and the app's Batch tab.

For N images, ``out`` receives::

    predictions.csv              one row per input, in order: file (the name given), score, label, the timings,
                                 the files written for it (relative to out), error (why it was skipped)
    overlays/<stem>_heatmap.png  the anomaly map over the image
    overlays/<stem>_contours.png the mask's outline over the image
    overlays/<stem>_panel.png    image | heatmap | contours side by side
    masks/<stem>_mask.png        the binary mask (0/255) at the image's own size
    predictions.zip              all of the above from this call (unless ``archive=False``)

``<stem>`` is ``<index>_<name's stem>`` (index over the inputs, 4 digits), so two ``000.png`` from
different folders stay apart. A file that cannot be read costs only its own row.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from iadbe.errors import ImageError

#: the overlays written per image (``overlays/``), beside the binary mask (``masks/``)
OVERLAYS = ("heatmap", "contours", "panel")
#: the columns naming the files written for an image
FILE_COLUMNS = tuple(f"{kind}_file" for kind in ("mask", *OVERLAYS))
CSV_NAME, ZIP_NAME = "predictions.csv", "predictions.zip"
#: progress(done, total, name of the image being predicted)
BatchProgress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BatchResult:
    """What :func:`predict_to_files` wrote."""

    out: Path
    rows: list[dict[str, Any]]  # one per input, in order (CSV columns)
    predictions: list[Any] = field(repr=False)  # the Predictions of the images read, in order
    csv: Path | None = None  # None when no row could be written
    archive: Path | None = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("error")]

    @property
    def anomalous(self) -> int:
        return sum(row.get("label") == "anomalous" for row in self.rows)


def predict_to_files(
    model: Any,
    files: Sequence[str | Path],
    out: str | Path,
    *,
    names: Sequence[str] | None = None,
    threshold: float = 0.5,
    opacity: float = 0.5,
    false_alarm_rate: float | None = None,
    batch_size: int = 8,
    archive: bool = True,
    progress: BatchProgress | None = None,
) -> BatchResult:
    """Predict ``files`` with a loaded model (:func:`~iadbe.inference.load_model`) and write the files above.

    Args:
        names: what each file is called in the CSV (default: the path as given).
        threshold, false_alarm_rate: as :meth:`~iadbe.inference.predictor.LoadedModel.predict`.
        opacity: of the heatmap over the image.
        archive: also write ``predictions.zip``.
    Returns:
        A :class:`BatchResult`; unreadable files have a row with ``error`` and no files.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [str(path) for path in files] if names is None else [str(name) for name in names]
    rows: list[dict[str, Any]] = []
    predictions = []
    for start in range(0, len(files), max(1, batch_size)):
        chunk = list(range(start, min(len(files), start + max(1, batch_size))))
        if progress is not None:
            progress(start, len(files), names[start])
        for index, result in zip(chunk, _predict_chunk(model, [files[i] for i in chunk], [names[i] for i in chunk],
                                                       threshold, false_alarm_rate)):
            if isinstance(result, ImageError):
                rows.append({"file": names[index], "error": str(result)})
                continue
            predictions.append(result)
            stem = f"{index:04d}_{Path(names[index]).stem}"
            rows.append({**result.summary(), **_save(result, opacity, out, stem), "error": ""})
    if progress is not None:
        progress(len(files), len(files), "")
    csv_path = _write_csv(out / CSV_NAME, rows) if rows else None
    written = [CSV_NAME] + [row[column] for row in rows for column in FILE_COLUMNS if row.get(column)]
    zip_path = _write_zip(out, written) if archive and csv_path else None
    return BatchResult(out=out, rows=rows, predictions=predictions, csv=csv_path, archive=zip_path)


def _predict_chunk(model: Any, files: list[Any], names: list[str], threshold: float,
                   false_alarm_rate: float | None) -> list[Any]:
    """The chunk's predictions; where a file cannot be read, each file alone (its error in its place)."""
    try:
        return model.predict(files, threshold=threshold, batch_size=len(files), names=names,
                             false_alarm_rate=false_alarm_rate)
    except ImageError:
        results: list[Any] = []
        for path, name in zip(files, names):
            try:
                results.extend(model.predict(path, threshold=threshold, names=[name],
                                             false_alarm_rate=false_alarm_rate))
            except ImageError as error:
                results.append(error)
        return results


def _save(prediction: Any, opacity: float, out: Path, stem: str) -> dict[str, str]:
    from iadbe.render import mask_image, render_prediction, save_views

    views = render_prediction(prediction, opacity)
    saved = save_views({kind: views[kind] for kind in OVERLAYS}, out / "overlays", stem)
    saved.update(save_views({"mask": mask_image(prediction.mask, prediction.image.shape[:2])}, out / "masks", stem))
    return {f"{kind}_file": saved[kind].relative_to(out).as_posix() for kind in ("mask", *OVERLAYS)}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_zip(out: Path, written: list[str]) -> Path:
    """``predictions.zip`` of this call's files only (``out`` may hold an earlier run's)."""
    archive = out / ZIP_NAME
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in written:
            bundle.write(out / name, name)
    return archive
