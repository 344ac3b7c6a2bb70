"""Model cards (``README.md``) for published IADBE models, built from a model's ``iadbe.json``.

The card's YAML header uses ``huggingface_hub.ModelCardData``: library ``iadbe``, tags, the training dataset,
``model-index`` evaluation results (image/pixel AUROC, PRO, F1 when present) and the license. Models trained
on MVTec AD inherit its CC BY-NC-SA 4.0 license.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

MVTEC_LICENSE = "cc-by-nc-sa-4.0"

#: (iadbe.json metric keys, model-index metric type, pretty name) of the metrics put into ``model-index``.
EVAL_METRICS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("image_AUROC",), "roc_auc", "Image AUROC"),
    (("pixel_AUROC",), "roc_auc", "Pixel AUROC"),
    (("pixel_AUPRO", "pixel_PRO"), "pro", "Pixel PRO (AUPRO)"),
    (("image_F1Score", "image_F1", "image_f1"), "f1", "Image F1"),
    (("pixel_F1Score", "pixel_F1", "pixel_f1"), "f1", "Pixel F1"),
)


def _dataset(meta: dict[str, Any]) -> dict[str, Any]:
    dataset = meta.get("dataset") or {}
    return dataset if isinstance(dataset, dict) else {"name": str(dataset)}


def is_mvtec(meta: dict[str, Any]) -> bool:
    """True when the model was trained on an MVTec dataset (AD, LOCO, 3D-AD...)."""
    return "mvtec" in str(_dataset(meta).get("name", "")).lower()


def model_license(meta: dict[str, Any]) -> str:
    """The license of a trained model: MVTec data forces ``cc-by-nc-sa-4.0``; else ``meta['license']`` or ``other``."""
    if is_mvtec(meta):
        return MVTEC_LICENSE
    return str(meta.get("license") or "other")


def finite_metrics(meta: dict[str, Any]) -> dict[str, float]:
    """``meta['metrics']`` without missing or non-finite values, as floats."""
    out: dict[str, float] = {}
    for key, value in (meta.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[str(key)] = float(value)
    return out


def _eval_results(meta: dict[str, Any], metrics: dict[str, float]) -> list[Any]:
    from huggingface_hub import EvalResult

    dataset = _dataset(meta)
    name = str(dataset.get("name") or "unknown")
    category = dataset.get("category")
    pretty = f"{name} ({category})" if category else name
    results = []
    for keys, metric_type, metric_name in EVAL_METRICS:
        key = next((k for k in keys if k in metrics), None)
        if key is None:
            continue
        results.append(EvalResult(
            task_type="anomaly-detection", task_name="Anomaly Detection",
            dataset_type=name, dataset_name=pretty, dataset_config=str(category) if category else None,
            dataset_split="test", metric_type=metric_type, metric_name=metric_name,
            metric_value=round(metrics[key], 6),
        ))
    return results


def _fmt_seconds(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "unknown"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def epochs_summary(meta: dict[str, Any]) -> str | None:
    """How far a training got against the study's epochs, e.g. "3.2 of the study's 50 epochs (6 %), stopped
    by the 5-minute cap"; None for detectors that fit in one pass (or records without the counts)."""
    trained, study = meta.get("epochs_trained"), meta.get("study_epochs")
    if study is None and meta.get("model"):
        from iadbe.errors import SettingsError
        from iadbe.models import get_spec

        try:
            study = get_spec(str(meta["model"])).max_epochs
        except SettingsError:
            study = None
    if not isinstance(trained, (int, float)) or not isinstance(study, (int, float)) or study <= 1:
        return None
    text = f"{trained:g} of the study's {study:g} epochs ({100 * trained / study:.0f} %)"
    cap = meta.get("max_train_minutes")
    asked = (meta.get("detector") or {}).get("max_epochs", study)
    if cap and trained < asked:
        text += f", stopped by the {cap:g}-minute cap"
    return text


def _body(meta: dict[str, Any], metrics: dict[str, float], license_id: str, uri: str | None) -> str:
    dataset = _dataset(meta)
    name = meta.get("name") or meta.get("model", "model")
    size = meta.get("image_size") or []
    spec = _spec(meta)
    rows = [
        ("Detector", f"`{meta.get('model', '?')}` ({spec.family if spec and not spec.anomalib_class else 'anomalib'})"),
        ("Backbone", f"`{meta['backbone']}`" if meta.get("backbone") else "none"),
        ("Dataset", f"{dataset.get('name', '?')}" + (f", category `{dataset['category']}`" if dataset.get("category") else "")),
        ("Input size (H x W)", " x ".join(str(s) for s in size) if size else "?"),
        ("Training time", _fmt_seconds(meta.get("training_time_s"))),
        ("Created", str(meta.get("created", "?"))),
    ]
    epochs = epochs_summary(meta)
    if epochs:
        rows.insert(-1, ("Epochs trained", epochs))
    versions = meta.get("versions") or {}
    if versions:
        rows.append(("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    lines = [f"# {name}", "", "An industrial anomaly detector trained and exported with "
             "IADBE (Industrial Anomaly Detection Benchmark Engine).", "",
             "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if metrics:
        lines += ["", "## Test metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
        validation = meta.get("validation")
        if validation:
            lines += ["", f"Thresholds were chosen on validation data: {validation}."]
        calibration = meta.get("calibration") or {}
        if calibration.get("false_alarm_rate"):
            share = calibration.get("defect_share")
            chosen = (f", the best expected F1 on the real validation defects at a {100 * share:.3g} % defect share"
                      if share else "")
            lines += ["", f"Calibration rule `{calibration.get('rule')}`{chosen}: the image threshold flags "
                      f"{100 * calibration['false_alarm_rate']:.2g} % of good parts (estimated on the validation "
                      "normals). `image_F1` is measured at that threshold; `image_F1_oracle` at the best threshold "
                      "on the test set, as the IADBE study reported F1."]
    lines += ["", "## How to load", "", "```python", "import iadbe", "",
              f'model = iadbe.load_model("{uri or "hf://OWNER/NAME/PATH@REVISION"}")', "```", "",
              "or from the command line:", "", "```bash",
              f"iadbe predict --model {uri or 'hf://OWNER/NAME/PATH@REVISION'} image.png", "```", "",
              "Pin a full commit hash after `@` for reproducible results; IADBE checks the sha256 of every "
              "file listed in its manifest. Only `iadbe.json`, `weights.safetensors` and the OpenVINO IR "
              "(`openvino/model.xml`, `openvino/model.bin`) are loaded: no pickled checkpoints.", "",
              "## License", ""]
    if license_id == MVTEC_LICENSE and is_mvtec(meta):
        lines.append("This model was trained on the MVTec dataset, which is licensed under CC BY-NC-SA 4.0 "
                     "(non-commercial, share-alike); the model inherits that license from its training data.")
    else:
        lines.append(f"`{license_id}`.")
    if spec is not None and spec.license_note:
        lines += ["", spec.license_note]
    return "\n".join(lines) + "\n"


def _spec(meta: dict[str, Any]) -> Any:
    """The registry entry of the model's detector (None for a detector this installation does not know)."""
    from iadbe.errors import SettingsError
    from iadbe.models import get_spec

    try:
        return get_spec(str(meta.get("model", "")))
    except SettingsError:
        return None


def build_model_card(
    meta: dict[str, Any],
    *,
    repo_id: str | None = None,
    path_in_repo: str = "",
    revision: str | None = None,
) -> ModelCard:
    """Build the model card of a trained model.

    Args:
        meta: the parsed ``iadbe.json`` (keys in docs/ARCHITECTURE.md).
        repo_id: ``OWNER/NAME`` the model is published to, for the "how to load" snippet.
        path_in_repo: folder of the model directory in the repo.
        revision: commit to pin in the snippet (unknown before the commit that adds the card: then omitted).

    Returns:
        A ``huggingface_hub.ModelCard``; ``str(card)`` is the ``README.md`` text.

    Example:
        >>> card = build_model_card(json.loads(Path("model/iadbe.json").read_text()), repo_id="me/padim")
        >>> card.data.license
        'cc-by-nc-sa-4.0'
    """
    from huggingface_hub import ModelCard, ModelCardData

    metrics = finite_metrics(meta)
    license_id = model_license(meta)
    dataset_name = _dataset(meta).get("name")
    model_name = str(meta.get("name") or (repo_id or "iadbe-model").split("/")[-1])
    eval_results = _eval_results(meta, metrics)
    tags = ["anomaly-detection", "anomalib", "iadbe"]
    if meta.get("model"):
        tags.append(str(meta["model"]))
    data = ModelCardData(
        library_name="iadbe",
        license=license_id,
        tags=tags,
        datasets=[str(dataset_name)] if dataset_name else None,
        metrics=sorted({m for _, m, _ in EVAL_METRICS if any(r.metric_type == m for r in eval_results)}) or None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    from iadbe.hub.refs import hub_uri

    uri = hub_uri(repo_id, path_in_repo, revision) if repo_id else None
    content = f"---\n{data.to_yaml()}\n---\n\n{_body(meta, metrics, license_id, uri)}"
    return ModelCard(content)
