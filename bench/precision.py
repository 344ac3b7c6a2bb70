"""What OpenVINO's precision and weight-compression options buy on the CPU, and what they cost in accuracy.

    python bench/precision.py [--runs 30]

For PaDiM and PatchCore (Lite0, 256 px, the bench models) and each variant of the same IR:

* f32: IADBE's default;
* bf16: ``INFERENCE_PRECISION_HINT=bf16`` (what OpenVINO picks by itself on CPUs with AMX/AVX512-BF16);
* f16 weights: the IR saved with ``compress_to_fp16=True``, run in f32;
* int8 weights: NNCF ``compress_weights`` (INT8_ASYM), run in f32;

it prints the batch-1 latency (median of --runs), the largest normalised-score change against f32 on the
whole tire test set, label flips at the model's threshold, and image / pixel AUROC.
"""

from __future__ import annotations

import argparse
import glob
import tempfile
from pathlib import Path

import numpy as np

from _models import TIRE, trained_model
from _timing import median_ms


def tire_test_set(size: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    import cv2

    from iadbe.images import load_image

    paths = sorted(glob.glob(str(TIRE / "tire" / "test" / "*" / "rgb" / "*.png")))
    if not paths:
        raise SystemExit(f"needs the tire test set under {TIRE}")
    labels = np.array([0 if "/good/" in p else 1 for p in paths])
    masks = []
    for path in paths:
        gt = cv2.imread(path.replace("/rgb/", "/gt/"), cv2.IMREAD_GRAYSCALE) if "/good/" not in path else None
        mask = np.zeros(size, np.uint8) if gt is None else \
            cv2.resize((gt > 0).astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST)
        masks.append(mask)
    return [load_image(p) for p in paths], labels, np.stack(masks)


def variants(xml: Path, workdir: Path) -> dict[str, tuple[object, str]]:
    """name -> (ov.Model, inference precision)."""
    import logging

    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.ERROR)
    core = ov.Core()
    f16 = workdir / f"{xml.parent.parent.name}-f16.xml"
    ov.save_model(core.read_model(str(xml)), f16, compress_to_fp16=True)
    int8 = nncf.compress_weights(core.read_model(str(xml)), mode=nncf.CompressWeightsMode.INT8_ASYM)
    return {
        "f32": (core.read_model(str(xml)), "f32"),
        "bf16": (core.read_model(str(xml)), "bf16"),
        "f16 weights": (core.read_model(str(f16)), "f32"),
        "int8 weights (NNCF)": (int8, "f32"),
    }


def measure(runs: int = 30, threads: int = 2) -> list[dict]:
    import openvino as ov
    from sklearn.metrics import roc_auc_score

    from iadbe.images import to_batch
    from iadbe.metrics import Calibration
    from iadbe.store import read_config

    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="iadbe-precision-"))
    for name in ("padim", "patchcore"):
        model_dir = trained_model(name)
        meta = read_config(model_dir)
        size = tuple(meta["image_size"])
        calibration = Calibration.from_dict(meta["postprocess"])
        images, labels, masks = tire_test_set(size)
        reference = None
        for variant, (model, precision) in variants(model_dir / "openvino" / "model.xml", workdir).items():
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                              "PERFORMANCE_HINT": "LATENCY",
                                                              "INFERENCE_NUM_THREADS": threads})
            request = compiled.create_infer_request()
            scores, maps = [], []
            for start in range(0, len(images), 8):
                request.infer({0: to_batch(images[start:start + 8], size)})
                scores.append(request.get_output_tensor(0).data.reshape(-1).copy())
                maps.append(request.get_output_tensor(1).data.copy().reshape(-1, *size))
            one = to_batch(images[:1], size)
            latency = median_ms(lambda r=request, x=one: r.infer({0: x}), runs, warmup=3)
            normalised = calibration.normalize_scores(np.concatenate(scores))
            amap = np.concatenate(maps)
            if reference is None:
                reference = normalised
            rows.append({
                "model": name, "variant": variant, "ms": latency,
                "score_diff": float(np.abs(normalised - reference).max()),
                "flips": int(((normalised > 0.5) != (reference > 0.5)).sum()),
                "image_auroc": float(roc_auc_score(labels, normalised)),
                "pixel_auroc": float(roc_auc_score(masks.reshape(-1), amap.reshape(-1))),
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = measure(args.runs, args.threads)
    print(f"OpenVINO CPU, batch 1, 256 px, {args.threads} threads; accuracy on all 112 tire test images")
    print(f"{'model':<10} {'variant':<20} {'ms':>6} {'vs f32':>7} {'max score diff':>15} {'label flips':>12} "
          f"{'image AUROC':>12} {'pixel AUROC':>12}")
    base = {}
    for row in rows:
        base.setdefault(row["model"], row["ms"])
        print(f"{row['model']:<10} {row['variant']:<20} {row['ms']:6.1f} {base[row['model']] / row['ms']:6.2f}x "
              f"{row['score_diff']:15.4f} {row['flips']:12d} {100 * row['image_auroc']:12.2f} "
              f"{100 * row['pixel_auroc']:12.2f}")


if __name__ == "__main__":
    main()
