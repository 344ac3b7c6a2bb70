"""The study's plots from aggregated benchmark rows, as PNG files (matplotlib's Agg backend, no window)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _display(model: str) -> str:
    from iadbe.models import get_spec

    return get_spec(model).display_name


def make_plots(rows: Sequence[dict[str, Any]], out: Path) -> dict[str, Path]:
    """auroc_vs_time.png, per_category_<metric>.png and radar.png (per-category mode rows)."""
    rows = [r for r in rows if r["mode"] == "per_category"]
    if not rows:
        return {}
    files = {"auroc_vs_time": plot_auroc_vs_time(rows, Path(out) / "auroc_vs_time.png")}
    for metric in ("image_AUROC", "pixel_AUROC"):
        if any(r[metric] is not None for r in rows):
            files[f"per_category_{metric}"] = plot_per_category(rows, metric, Path(out) / f"per_category_{metric}.png")
    radar = plot_radar(rows, Path(out) / "radar.png")
    if radar is not None:
        files["radar"] = radar
    return files


def plot_auroc_vs_time(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Mean image AUROC against mean training time (log scale), one point per model."""
    plt = _pyplot()
    per_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["image_AUROC"] is not None and row["training_time_s"] is not None:
            per_model[row["model"]].append(row)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for model, items in sorted(per_model.items()):
        seconds = statistics.fmean(i["training_time_s"].mean for i in items)
        auroc = 100 * statistics.fmean(i["image_AUROC"].mean for i in items)
        ax.scatter([max(seconds, 1e-2)], [auroc], s=40)
        ax.annotate(f"{_display(model)} ({auroc:.1f})", (max(seconds, 1e-2), auroc), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("image AUROC (%)")
    ax.set_title("Image AUROC vs training time (mean over categories)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_per_category(rows: Sequence[dict[str, Any]], metric: str, path: Path) -> Path:
    """Grouped bars: one group per category, one bar per model; error bars = std over seeds."""
    plt = _pyplot()
    import numpy as np

    models = sorted({r["model"] for r in rows if r[metric] is not None})
    categories = sorted({r["category"] for r in rows if r[metric] is not None})
    cells = {(r["model"], r["category"]): r[metric] for r in rows if r[metric] is not None}
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(categories) * max(1, len(models)) * 0.5), 4.5), dpi=110)
    x = np.arange(len(categories))
    for index, model in enumerate(models):
        means = [100 * cells[(model, c)].mean if (model, c) in cells else math.nan for c in categories]
        stds = [100 * cells[(model, c)].std if (model, c) in cells else 0.0 for c in categories]
        ax.bar(x + index * width - 0.4 + width / 2, means, width, yerr=stds, label=_display(model), capsize=2)
    ax.set_xticks(x, categories, rotation=30 if len(categories) > 4 else 0)
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{metric.replace('_', ' ')} per category")
    ax.legend(fontsize=8, ncol=min(4, len(models)))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_radar(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """The study's radar chart: per model, image AUROC / pixel AUROC / PRO / image F1 / speed (means)."""
    plt = _pyplot()
    import numpy as np

    axes = [("image_AUROC", "image AUROC"), ("pixel_AUROC", "pixel AUROC"), ("pixel_AUPRO", "PRO"),
            ("image_F1", "image F1"), ("image_AUPR", "image AUPR")]
    per_model: dict[str, dict[str, float]] = {}
    for model in sorted({r["model"] for r in rows}):
        items = [r for r in rows if r["model"] == model]
        values = {}
        for key, _ in axes:
            present = [i[key].mean for i in items if i[key] is not None]
            values[key] = statistics.fmean(present) if present else 0.0
        per_model[model] = values
    if not per_model:
        return None
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    fig = plt.figure(figsize=(5.5, 5.5), dpi=110)
    ax = fig.add_subplot(111, polar=True)
    for model, values in per_model.items():
        data = [100 * values[key] for key, _ in axes]
        ax.plot(angles + angles[:1], data + data[:1], label=_display(model))
        ax.fill(angles + angles[:1], data + data[:1], alpha=0.1)
    ax.set_xticks(angles, [label for _, label in axes])
    ax.set_ylim(0, 100)
    ax.set_title("Mean over categories (%)")
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
