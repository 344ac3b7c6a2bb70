"""Per-image latency of IADBE's torch CPU and OpenVINO CPU backends, side by side in one run.

    python bench/inference.py [--runs 50] [--threads 2]

Median over --runs calls after warm-up, batch 1 at the model's 256 px, plus images/s at batch 8.
"""

from __future__ import annotations

import argparse

from _models import bench_images, trained_model
from _timing import median_ms


def measure(runs: int = 50, threads: int = 2) -> list[tuple]:
    """Per model: (name, torch ms, torch img/s at 8, OpenVINO ms, OpenVINO img/s at 8, speedup)."""
    import torch

    torch.set_num_threads(threads)
    from iadbe.inference import load_model
    from iadbe.images import load_image, to_batch

    rows = []
    for name in ("padim", "patchcore"):
        model_dir = trained_model(name)
        images = [load_image(p) for p in bench_images(8)]
        results = {}
        for backend in ("torch", "openvino"):
            model = load_model(model_dir, backend=backend)
            one = to_batch(images[:1], model.config.image_size)
            eight = to_batch(images, model.config.image_size)
            latency = median_ms(lambda m=model, x=one: m.backend.run(x), runs, warmup=3)
            throughput = 8000 / median_ms(lambda m=model, x=eight: m.backend.run(x), max(5, runs // 5),
                                          warmup=3)
            results[backend] = (latency, throughput)
        rows.append((name, *results["torch"], *results["openvino"], results["torch"][0] / results["openvino"][0]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = measure(args.runs, args.threads)
    print(f"{'model':<10} {'torch ms':>9} {'torch img/s@8':>14} {'openvino ms':>12} {'ov img/s@8':>11} "
          f"{'speedup':>8}  (batch 1, 256 px, {args.threads} threads, median of {args.runs})")
    for name, t_ms, t_ips, o_ms, o_ips, ratio in rows:
        verdict = "PASS" if ratio > 1 else "FAIL"
        print(f"{name:<10} {t_ms:9.1f} {t_ips:14.1f} {o_ms:12.1f} {o_ips:11.1f} {ratio:7.2f}x  {verdict}")


if __name__ == "__main__":
    main()
