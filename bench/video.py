"""Video frames per second end to end against the engine alone (issue 17's target: at least 30 frames/s
for a 256 px video on the CPU), for PaDiM and PatchCore at 256 px.

    python bench/video.py [--frames 150] [--rounds 3]

The clip: ``--frames`` frames of 256x256 cut from the benchmark images (``bench/_models.py``), moving a few
pixels per frame, written as H.264 by IADBE's own writer. End to end is ``iadbe.video.predict_video``:
decode (OpenCV), predict (batches of 8), draw every frame, encode H.264 (FFmpeg, in its own process),
plus the CSV, the flagged frames and the timeline. The engine alone is ``LoadedModel.predict`` on the same
decoded frames in batches of 8. Rounds alternate, so both sides see the same machine load.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from _models import bench_images, trained_model

TARGET_FPS = 30.0
SIDE = 256


def make_clip(path: Path, frames: int) -> list[np.ndarray]:
    """A ``frames``-long 256 px H.264 clip panning across the benchmark images; returns its decoded frames."""
    import cv2

    from iadbe.images import load_image
    from iadbe.video import H264Writer

    sources = [cv2.resize(load_image(p), (SIDE + 64, SIDE + 64), interpolation=cv2.INTER_AREA)
               for p in bench_images(4)]
    writer = H264Writer(path, 30.0)
    for index in range(frames):
        source = sources[(index // 40) % len(sources)]
        shift = index % 40
        writer.write(np.ascontiguousarray(source[shift: shift + SIDE, shift: shift + SIDE]))
    writer.close()
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return decoded


def measure(frames: int = 150, rounds: int = 3) -> list[tuple[str, str, str, float, bool | None]]:
    """Rows of (target, measured, reference, ratio, passed) for bench/run_all.py."""
    from iadbe.inference import load_model
    from iadbe.video import predict_video

    work = Path(tempfile.mkdtemp(prefix="iadbe-bench-video-"))
    rows = []
    try:
        clip = work / "clip.mp4"
        decoded = make_clip(clip, frames)
        for name in ("padim", "patchcore"):
            model = load_model(trained_model(name))
            model.predict(decoded[:8], batch_size=8)  # warm
            end_to_end, engine, parts = [], [], []
            for round_index in range(rounds):
                began = time.perf_counter()
                model.predict(decoded, batch_size=8)
                engine.append(len(decoded) / (time.perf_counter() - began))
                result = predict_video(model, clip, work / f"{name}-{round_index}", batch_size=8)
                end_to_end.append(result.frames_per_s)
                parts.append(result.timings_s)
            fps, engine_fps = statistics.median(end_to_end), statistics.median(engine)
            split = {key: statistics.median(p[key] for p in parts) * 1000 / len(decoded)
                     for key in ("decode", "predict", "render", "encode")}
            detail = ", ".join(f"{key} {value:.1f}" for key, value in split.items())
            rows.append((f"video frames/s end to end, {SIDE} px ({name}, {model.backend_name})",
                         f"{fps:.1f} vs engine {engine_fps:.1f} fps (ms/frame: {detail})",
                         f"{TARGET_FPS:.0f} fps", fps / TARGET_FPS, fps >= TARGET_FPS))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for target, measured, reference, ratio, passed in measure(args.frames, args.rounds):
        print(f"{target:<50} {measured:<80} {reference:<8} {ratio:6.2f}  {'PASS' if passed else 'FAIL'}")


if __name__ == "__main__":
    main()
