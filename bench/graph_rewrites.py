"""What the size-fitted graph rewrites (the graph hooks of iadbe/models/padim.py and patchcore.py) buy in OpenVINO.

    python bench/graph_rewrites.py [--runs 40] [--strips 1,2,4]

For the PaDiM and PatchCore bench models (Lite0, 256 px) it exports the same trained model twice,
without the rewrites (anomalib's forward with separable blurs: IADBE before) and with them (PaDiM's
symmetric-strip Mahalanobis and leaner embedding, both models' map upsampling + blur as two matmuls),
and times both in one interleaved run at batch 1, 2 threads, f32 and bf16. It prints the medians,
the speed-up, the largest score difference and the IR size. ``--strips`` also times PaDiM with other
strip counts (1 = anomalib's full-matrix product).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from _models import bench_images, trained_model
from _timing import median_ms


def export_variant(model_dir: Path, out: Path, rewrites: bool, strips: int | None = None) -> Path:
    import openvino as ov
    import torch

    from iadbe import store
    from iadbe.graph import build_inference_graph, load_state_resizing_buffers
    from iadbe.models import create_detector, get_spec
    from iadbe.models.factory import DetectorConfig
    from iadbe.models.padim import padim_graph

    config = DetectorConfig.from_dict(store.read_config(model_dir)["detector"])
    module = create_detector(config, pre_trained=False)
    load_state_resizing_buffers(module.model, store.load_weights(model_dir / store.WEIGHTS_FILE), model_dir)
    forward = None  # the detector's graph hook, with its size-fitted rewrites
    if not rewrites:  # the hook's batch-dynamic forward without them
        forward = get_spec(config.model).hook("graph")(module.model, None)
    elif strips is not None:
        forward = padim_graph(module.model, config.image_size, strips=strips)
    graph = build_inference_graph(module.model, config, forward=forward)
    with torch.no_grad():
        ov_model = ov.convert_model(graph, example_input=torch.rand(2, 3, *config.image_size))
    ov_model.reshape({ov_model.inputs[0]: [-1, 3, *config.image_size]})
    xml = out / "model.xml"
    ov.save_model(ov_model, xml, compress_to_fp16=False)
    return xml


def batch_for(model_dir: Path) -> np.ndarray:
    import cv2

    from iadbe import store
    from iadbe.images import load_image

    size = tuple(store.read_config(model_dir)["detector"]["image_size"])
    image = load_image(bench_images(1)[0])
    resized = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)


def main() -> None:
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--strips", default="", help="extra PaDiM strip counts to time, e.g. 1,2,4")
    args = parser.parse_args()
    core = ov.Core()
    print(f"{'model':10s} {'variant':12s} {'prec':5s} {'IR MB':>6s} {'ms':>7s} {'speed-up':>8s} {'max |score diff|':>16s}")
    for name in ("padim", "patchcore"):
        model_dir = trained_model(name)
        batch = batch_for(model_dir)
        with tempfile.TemporaryDirectory() as tmp:
            variants = {"before": export_variant(model_dir, _dir(tmp, "before"), rewrites=False),
                        "rewritten": export_variant(model_dir, _dir(tmp, "rewritten"), rewrites=True)}
            if name == "padim":
                for count in filter(None, args.strips.split(",")):
                    variants[f"strips={count}"] = export_variant(model_dir, _dir(tmp, count), True, int(count))
            for precision in ("f32", "bf16"):
                requests = {key: core.compile_model(core.read_model(xml), "CPU", {
                    "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": 2}).create_infer_request() for key, xml in variants.items()}
                scores = {key: float(request.infer([batch])[0].ravel()[0]) for key, request in requests.items()}
                times: dict[str, list[float]] = {key: [] for key in requests}
                for _ in range(5):  # interleaved rounds: a busy moment hurts every variant alike
                    for key, request in requests.items():
                        times[key].append(median_ms(lambda r=request: r.infer([batch]), args.runs // 5, warmup=2))
                base = float(np.median(times["before"]))
                for key, xml in variants.items():
                    ms = float(np.median(times[key]))
                    size_mb = xml.with_suffix(".bin").stat().st_size / 1e6
                    print(f"{name:10s} {key:12s} {precision:5s} {size_mb:6.0f} {ms:7.2f} {base / ms:7.2f}x "
                          f"{abs(scores[key] - scores['before']):16.2e}")


def _dir(root: str, name: str) -> Path:
    path = Path(root) / str(name)
    path.mkdir()
    return path


if __name__ == "__main__":
    main()
