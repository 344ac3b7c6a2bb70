"""Videos (``iadbe/video.py``) through the library, the CLI and the running app.

The clip is made of the fixture dataset's own pictures (``tests/test_app.py``: noisy texture, bright square
defects): good frames, then defect frames, then good frames again, written with OpenCV's ``mp4v`` (not the
H.264 IADBE writes, so reading another codec is covered too). The model is the app fixture's 64 px PaDiM.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    from .test_app import FIXTURE_MODEL, PROJECT, SCORE_TOL, running_app
except ImportError:
    from test_app import FIXTURE_MODEL, PROJECT, SCORE_TOL, running_app

from iadbe.errors import VideoError

GOOD, DEFECT = 8, 4  # frames before and after the defects, defect frames


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """RGB frames as an ``mp4v`` MP4 (OpenCV's own encoder)."""
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def clip_frames(data: Path) -> list[np.ndarray]:
    good = sorted((data / "good").glob("*.png"))
    defects = sorted((data / "defect").glob("*.png"))
    pick = [good[i % len(good)] for i in range(GOOD)] + defects[:DEFECT] + [good[-1 - i] for i in range(GOOD)]
    return [np.asarray(Image.open(path).convert("RGB")) for path in pick]


def decoded_frames(path: Path) -> list[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, hub_server):
    return running_app(tmp_path_factory, hub_server)


@pytest.fixture(scope="module")
def clip(app, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", clip_frames(app.data))


@pytest.fixture(scope="module")
def model(app):
    from iadbe.inference import load_model

    return load_model(app.store / FIXTURE_MODEL, backend="openvino")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def codec_of(path: Path) -> str:
    """The video stream's codec name, as FFmpeg (imageio-ffmpeg's binary) reports it."""
    import imageio_ffmpeg

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                           text=True)
    line = next(line for line in probe.stderr.splitlines() if "Video:" in line)
    return line.split("Video:")[1].split()[0]


# --------------------------------------------------------------------------- library
def test_an_mp4_gives_an_annotated_h264_mp4_a_csv_a_plot_and_the_flagged_frames(clip, model, tmp_path):
    from iadbe.video import predict_video

    seen = []
    result = predict_video(model, clip, tmp_path / "out", batch_size=4, progress=lambda f, m: seen.append(f))
    frames = decoded_frames(clip)
    assert result.frames == len(frames) == GOOD * 2 + DEFECT
    expected = model.predict(frames, names=[str(i) for i in range(len(frames))])

    rows = read_csv(result.csv)
    assert [int(row["frame"]) for row in rows] == list(range(len(frames)))
    for row, prediction in zip(rows, expected):
        assert float(row["score"]) == pytest.approx(prediction.score, abs=SCORE_TOL)
        assert row["label"] == prediction.label_text
        assert bool(row["flagged_image"]) == prediction.label
    labels = [row["label"] for row in rows]
    assert labels[GOOD:GOOD + DEFECT] == ["anomalous"] * DEFECT  # the defect frames are found
    assert labels.count("anomalous") == result.anomalous == len(result.flagged)
    assert all((tmp_path / "out" / row["flagged_image"]).is_file() for row in rows if row["flagged_image"])

    assert codec_of(result.video) == "h264"  # what browsers play
    annotated = decoded_frames(result.video)
    assert len(annotated) == len(frames) and annotated[0].shape == frames[0].shape
    banner = annotated[GOOD][:4].astype(int)  # the banner of a defect frame is tinted red
    assert banner[..., 0].mean() > banner[..., 1].mean() + 30
    assert abs(float(result.timeline.stat().st_size) > 5000)
    assert Image.open(result.timeline).size == (900, 300)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert result.frames_per_s > 0 and set(result.timings_s) >= {"decode", "predict", "render", "encode", "total"}


def test_bad_videos_get_clear_errors(clip, model, tmp_path, monkeypatch):
    from iadbe import constants
    from iadbe.video import predict_video

    def refused(path: Path, pattern: str) -> None:
        with pytest.raises(VideoError, match=pattern):
            predict_video(model, path, tmp_path / path.stem)
        assert not (tmp_path / path.stem / "annotated.mp4").exists()

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    refused(corrupt, "not a readable video")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    refused(truncated, "not a readable video|no frame could be decoded")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    refused(empty, "empty")
    refused(zero_frame_video(tmp_path / "zero.mp4"), "not a readable video|no frame")
    monkeypatch.setattr(constants, "MAX_VIDEO_PIXELS", 32 * 32)
    refused(clip, r"64x64 frames are above the limit of 1,024 pixels")


def zero_frame_video(path: Path) -> Path:
    """An MP4 container with a video stream and no frame (OpenCV's writer, closed at once)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    writer.release()
    if not path.exists():
        path.write_bytes(b"")
    return path


def test_a_raising_progress_callback_stops_the_run_and_leaves_no_video(clip, model, tmp_path):
    from iadbe.video import predict_video

    class Stop(Exception):
        pass

    def stop_after_first(fraction: float, message: str) -> None:
        raise Stop

    with pytest.raises(Stop):
        predict_video(model, clip, tmp_path / "out", batch_size=4, progress=stop_after_first)
    assert not (tmp_path / "out" / "annotated.mp4").exists()


# --------------------------------------------------------------------------- CLI
def test_cli_predicts_a_video_next_to_images(app, clip, tmp_path):
    out = tmp_path / "predictions"
    image = app.data / "good" / "000.png"
    done = subprocess.run([sys.executable, "-m", "iadbe", "predict", "--model", str(app.store / FIXTURE_MODEL),
                           str(clip), str(image), "--out", str(out)], cwd=PROJECT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "clip" / "annotated.mp4").is_file() and (out / "clip" / "timeline.png").is_file()
    rows = read_csv(out / "clip" / "scores.csv")
    assert len(rows) == GOOD * 2 + DEFECT
    assert "clip.mp4" in done.stdout and f"{DEFECT}" in done.stdout
    assert len(read_csv(out / "predictions.csv")) == 1  # the image, as before

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    failed = subprocess.run([sys.executable, "-m", "iadbe", "predict", "--model", str(app.store / FIXTURE_MODEL),
                             str(broken), "--out", str(tmp_path / "p2")], cwd=PROJECT, capture_output=True, text=True,
                            timeout=300)
    assert failed.returncode != 0 and "not a readable video" in failed.stderr and "Traceback" not in failed.stderr


# --------------------------------------------------------------------------- app
def huge_video(path: Path) -> Path:
    """Two 4000x2400 frames (above the default limit of 3840x2160 pixels), flat grey: a small file."""
    return write_clip(path, [np.full((2400, 4000, 3), 128, np.uint8)] * 2, fps=2)


def test_the_app_inspects_a_video_and_refuses_bad_ones_clearly(app, clip, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app.url, verbose=False)
    video, timeline, gallery, archive, summary = client.predict(
        handle_file(str(clip)), FIXTURE_MODEL, "auto", 0.5, 0.5, 0, api_name="/predict_video")
    video_path = Path(video["video"] if isinstance(video, dict) else video)
    assert codec_of(video_path) == "h264" and len(decoded_frames(video_path)) == GOOD * 2 + DEFECT
    assert Image.open(timeline).size == (900, 300)
    assert len(gallery) >= DEFECT
    assert f"{GOOD * 2 + DEFECT} frames" in summary
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
    assert "scores.csv" in names and "timeline.png" in names and sum(n.startswith("flagged/") for n in names) >= DEFECT

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    for path, pattern in ((corrupt, "not a readable video"), (truncated, "not a readable video|no frame"),
                          (zero_frame_video(tmp_path / "zero.mp4"), "not a readable video|no frame|empty"),
                          (huge_video(tmp_path / "huge.mp4"), "4000x2400 frames are above the limit")):
        with pytest.raises(AppError) as caught:
            client.predict(handle_file(str(path)), FIXTURE_MODEL, "auto", 0.5, 0.5, 0, api_name="/predict_video")
        message = str(caught.value)
        assert "Unexpected error" not in message and re.search(pattern, message), message
    assert app.process.poll() is None  # still serving
    assert client.predict(handle_file(str(app.data / "good" / "000.png")), FIXTURE_MODEL, "auto", 0.5, 0.5,
                          api_name="/predict")[5] in ("normal", "anomalous")


# --------------------------------------------------------------------------- live camera
def test_frames_arriving_while_one_is_scored_are_dropped_and_counted_not_queued():
    import threading
    import time

    from iadbe.video import LiveCounter

    counter, started, release = LiveCounter(), threading.Event(), threading.Event()
    outcomes: list[bool] = []

    def slow_frame() -> None:
        with counter.frame() as taken:
            outcomes.append(taken)
            started.set()
            release.wait(5)

    first = threading.Thread(target=slow_frame)
    first.start()
    started.wait(5)
    began = time.perf_counter()
    for _ in range(5):  # five frames while the first is being scored: each answered at once, none waits
        with counter.frame() as taken:
            outcomes.append(taken)
    assert time.perf_counter() - began < 1.0
    release.set()
    first.join(5)
    with counter.frame() as taken:  # free again
        outcomes.append(taken)
    assert outcomes == [True, False, False, False, False, False, True]
    assert (counter.processed, counter.dropped) == (2, 5)
    assert "2 frames scored, 5 dropped" in counter.status()


def test_the_live_handler_scores_a_camera_frame_and_counts_the_stream(app, monkeypatch):
    """``live_tab.live_frame`` in this process (gradio_client cannot call a streaming event: it does not know
    Gradio's ``process_streaming`` message), on the app fixture's model store."""
    from types import SimpleNamespace

    from iadbe import constants
    from iadbe.app import live_tab
    from iadbe.inference import load_model

    monkeypatch.setattr(constants, "MODEL_STORE", app.store)
    monkeypatch.setattr(constants, "SHARED_MODE", False)
    request = SimpleNamespace(session_hash="live-test")
    frame = np.asarray(Image.open(app.data / "defect" / "d000.png").convert("RGB"))
    picture, decision, status = live_tab.live_frame(frame, FIXTURE_MODEL, "auto", 0.5, 0.5, request=request)
    expected = load_model(app.store / FIXTURE_MODEL).predict(frame)[0]
    assert decision == f"{expected.score:.3f} {expected.label_text}"
    assert picture.shape == frame.shape and status.startswith("1 frames scored, 0 dropped")
    counter = live_tab.counter_for(request)
    with counter.frame():  # a frame in progress: the next one is dropped, and the status says so
        skipped = live_tab.live_frame(frame, FIXTURE_MODEL, "auto", 0.5, 0.5, request=request)
    assert skipped[2].startswith("2 frames scored, 1 dropped") or skipped[2].startswith("1 frames scored, 1 dropped")
