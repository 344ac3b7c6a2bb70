"""Video files through a model: every frame scored, drawn and written back as a video a browser plays.

``predict_video(model, "clip.mp4", out)`` writes into ``out``:

- ``annotated.mp4``: each frame with its heatmap, the outline of the region shown for its decision, and a
  banner (frame, score, label; red when anomalous). H.264 in yuv420p with the index at the front
  (``+faststart``), what every browser plays, encoded by the FFmpeg binary of ``imageio-ffmpeg`` (OpenCV's
  wheels carry no H.264 encoder: their ``mp4v`` plays in no browser);
- ``scores.csv``: frame, time, score, raw score, label and the flagged frame's image, one row per frame;
- ``timeline.png``: the score of every frame against time, with the threshold line;
- ``flagged/``: the anomalous frames as pictures (at most ``max_flagged``; the CSV names each one kept).

Frames are decoded by OpenCV (its FFmpeg), predicted in batches by ``LoadedModel.predict`` (the same
decisions as for images) and rendered by ``iadbe.render.frame_overlay``. A video that cannot be opened,
holds no frame, has frames above ``constants.MAX_VIDEO_PIXELS`` or more than ``constants.MAX_VIDEO_FRAMES``
frames raises :class:`~iadbe.errors.VideoError`. ``progress(fraction, message)`` is called after each batch;
raising from it stops the run (the app's Cancel) and removes the partial video.

:class:`LiveCounter` is the camera stream's rule (the app's Live tab): a frame that arrives while another is
being scored is dropped and counted, never queued.

Tests: ``tests/test_video.py``. Benchmark: ``bench/video.py`` (frames/s end to end against the engine alone).
"""

from __future__ import annotations

import contextlib
import csv
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from iadbe import constants
from iadbe.errors import SettingsError, StoreError, VideoError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".y4m")
#: Annotated frames are drawn at most this many pixels on their long side (scores use the full frame).
VIDEO_MAX_SIDE = 1024
#: Flagged frames written as pictures, at most.
MAX_FLAGGED = 300
#: x264 settings: "veryfast" keeps a 256 px video far ahead of the model; CRF 23 is x264's default quality.
X264_PARAMS = ("-preset", "veryfast", "-crf", "23", "-movflags", "+faststart")
CSV_HEADERS = ("frame", "time_s", "score", "raw_score", "label", "flagged_image")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frames (an estimate; 0 when unknown), frames per second, width, height."""

    frames: int
    fps: float
    width: int
    height: int


@dataclass(frozen=True)
class VideoResult:
    """The files written for one video and what was found."""

    video: Path
    csv: Path
    timeline: Path
    flagged: tuple[Path, ...]
    frames: int
    anomalous: int
    fps: float
    scores: tuple[float, ...] = field(repr=False)
    threshold: float = 0.5
    #: seconds spent decoding, predicting, drawing and encoding (encoding runs beside the rest in FFmpeg)
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def frames_per_s(self) -> float:
        total = self.timings_s.get("total", 0.0)
        return self.frames / total if total else float("nan")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def probe_video(source: str | Path) -> VideoInfo:
    """Open ``source`` and check it against the limits (nothing is decoded but the first frame).

    Raises:
        VideoError: not a readable video, no frame, frames too large or too many.
    """
    capture = _open(source)
    try:
        return _check(capture, Path(source).name)
    finally:
        capture.release()


def _open(source: str | Path) -> Any:
    import cv2

    path = Path(source)
    name = path.name
    if not path.is_file():
        raise VideoError(f"{name}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{name}: the file is empty (0 bytes)")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{name}: not a readable video (truncated, corrupt, or a format FFmpeg cannot read)")
    return capture


def _check(capture: Any, name: str) -> VideoInfo:
    import cv2

    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if width * height > constants.MAX_VIDEO_PIXELS:
        raise VideoError(f"{name}: {width}x{height} frames are above the limit of {constants.MAX_VIDEO_PIXELS:,} "
                         "pixels; scale the video down first (e.g. ffmpeg -vf scale=1280:-2)")
    if frames > constants.MAX_VIDEO_FRAMES:
        raise VideoError(f"{name}: {frames:,} frames, above the limit of {constants.MAX_VIDEO_FRAMES:,}; cut the "
                         "video into shorter parts")
    if width <= 0 or height <= 0:
        raise VideoError(f"{name}: the video has no picture (no frame size)")
    return VideoInfo(frames, fps if 0 < fps <= 1000 else 25.0, width, height)


def read_frames(capture: Any, name: str, max_side: int, batch_size: int,
                timings: dict[str, float]) -> Iterator[list[np.ndarray]]:
    """RGB frames in batches, shrunk to ``max_side`` and cut to even sides (H.264's yuv420p needs them)."""
    import cv2

    batch: list[np.ndarray] = []
    count = 0
    while True:
        began = time.perf_counter()
        ok, frame = capture.read()
        if not ok:
            timings["decode"] += time.perf_counter() - began
            break
        count += 1
        if count > constants.MAX_VIDEO_FRAMES:
            raise VideoError(f"{name}: more than {constants.MAX_VIDEO_FRAMES:,} frames; cut the video into "
                             "shorter parts")
        height, width = frame.shape[:2]
        scale = min(1.0, max_side / max(height, width))
        size = (max(2, round(width * scale)) // 2 * 2, max(2, round(height * scale)) // 2 * 2)
        if size != (width, height):
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        timings["decode"] += time.perf_counter() - began
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class H264Writer:
    """Frames (RGB uint8, all of one even size) into an H.264 MP4 through ``imageio-ffmpeg``'s FFmpeg."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self._writer: Any = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            try:
                import imageio_ffmpeg
            except ImportError:
                raise StoreError("writing videos needs imageio-ffmpeg (pip install imageio-ffmpeg)") from None
            height, width = frame.shape[:2]
            self._writer = imageio_ffmpeg.write_frames(
                str(self.path), (width, height), fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
                quality=None, macro_block_size=1, ffmpeg_log_level="error", output_params=list(X264_PARAMS))
            self._writer.send(None)
        self._writer.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def predict_video(model: Any, source: str | Path, out: str | Path, *, threshold: float | None = None,
                  false_alarm_rate: float | None = None, opacity: float = 0.5, batch_size: int = 8,
                  max_side: int = VIDEO_MAX_SIDE, max_flagged: int = MAX_FLAGGED,
                  progress: Callable[[float, str], None] | None = None) -> VideoResult:
    """Score, draw and re-encode every frame of ``source`` with ``model`` (a ``LoadedModel``) into ``out``.

    Args:
        threshold, false_alarm_rate: as for ``LoadedModel.predict``.
        opacity: of the heatmap over each frame.
        max_side: annotated frames are drawn at most this large (the model sees the full frame).
        progress: ``progress(fraction, message)`` after each batch; raise from it to stop.
    Raises:
        VideoError: see :func:`probe_video`; also when no frame at all can be decoded.
    Example:
        >>> result = predict_video(load_model("my-model"), "clip.mp4", "out")  # doctest: +SKIP
        >>> result.video, result.anomalous, f"{result.frames_per_s:.0f} frames/s"  # doctest: +SKIP
    """
    from iadbe.render import frame_overlay, jpeg_params

    import cv2

    if not 1 <= int(max_side) <= 8192:
        raise SettingsError(f"max_side must be between 1 and 8192, got {max_side!r}")
    source, out = Path(source), Path(out)
    capture = _open(source)
    timings = {"decode": 0.0, "predict": 0.0, "render": 0.0, "encode": 0.0}
    began = time.perf_counter()
    try:
        info = _check(capture, source.name)
        out.mkdir(parents=True, exist_ok=True)
        (out / "flagged").mkdir(exist_ok=True)
        writer = H264Writer(out / "annotated.mp4", info.fps)
        rows: list[tuple[Any, ...]] = []
        scores: list[float] = []
        flagged: list[Path] = []
        used_threshold = 0.5
        try:
            for batch in read_frames(capture, source.name, max_side, batch_size, timings):
                start = len(rows)
                names = [f"frame_{start + i:06d}" for i in range(len(batch))]
                tick = time.perf_counter()
                predictions = model.predict(batch, threshold=threshold, batch_size=batch_size, names=names,
                                            false_alarm_rate=false_alarm_rate)
                timings["predict"] += time.perf_counter() - tick
                for index, prediction in enumerate(predictions, start):
                    tick = time.perf_counter()
                    picture = frame_overlay(prediction, opacity, index)
                    kept = ""
                    if prediction.label and len(flagged) < max_flagged:
                        path = out / "flagged" / f"{prediction.name}.jpg"
                        if not cv2.imwrite(str(path), np.ascontiguousarray(picture[..., ::-1]), jpeg_params()):
                            raise StoreError(f"could not write {path} (is the disk full?)")
                        flagged.append(path)
                        kept = path.relative_to(out).as_posix()
                    timings["render"] += time.perf_counter() - tick
                    tick = time.perf_counter()
                    writer.write(picture)
                    timings["encode"] += time.perf_counter() - tick
                    used_threshold = prediction.threshold
                    scores.append(prediction.score)
                    rows.append((index, round(index / info.fps, 4), round(prediction.score, 6),
                                 round(prediction.raw_score, 6), prediction.label_text, kept))
                if progress is not None:
                    total = max(info.frames, len(rows))
                    progress(min(0.99, len(rows) / total), f"frame {len(rows)} of {total}")
            tick = time.perf_counter()
            writer.close()
            timings["encode"] += time.perf_counter() - tick
        except BaseException:
            with contextlib.suppress(Exception):  # FFmpeg may be what failed: the first error is the one to see
                writer.close()
            (out / "annotated.mp4").unlink(missing_ok=True)
            raise
    finally:
        capture.release()
    if not rows:
        (out / "annotated.mp4").unlink(missing_ok=True)
        raise VideoError(f"{source.name}: no frame could be decoded (the video is empty, truncated or corrupt)")
    timings["total"] = time.perf_counter() - began
    notes = []
    if info.frames and len(rows) < info.frames * 0.98:
        notes.append(f"the video ends early: {len(rows)} of the {info.frames} frames its header announces were "
                     "decoded (truncated?)")
    anomalous = sum(row[4] == "anomalous" for row in rows)
    if anomalous > len(flagged):
        notes.append(f"{anomalous} frames flagged; the first {len(flagged)} are kept as pictures")
    csv_path = _write_csv(out / "scores.csv", rows)
    timeline = _write_timeline(out / "timeline.png", [row[1] for row in rows], scores, used_threshold)
    if progress is not None:
        progress(1.0, f"{len(rows)} frames, {anomalous} anomalous")
    return VideoResult(video=out / "annotated.mp4", csv=csv_path, timeline=timeline, flagged=tuple(flagged),
                       frames=len(rows), anomalous=anomalous, fps=info.fps, scores=tuple(scores),
                       threshold=used_threshold, timings_s={k: round(v, 4) for k, v in timings.items()},
                       notes=tuple(notes))


def _write_csv(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADERS)
        writer.writerows(rows)
    return path


def _write_timeline(path: Path, times: list[float], scores: list[float], threshold: float) -> Path:
    import cv2

    from iadbe.charts import score_timeline
    from iadbe.render import png_params

    picture = score_timeline(times, scores, threshold)
    if not cv2.imwrite(str(path), np.ascontiguousarray(picture[..., ::-1]), png_params()):
        raise StoreError(f"could not write {path} (is the disk full?)")
    return path


# --------------------------------------------------------------------------- live camera
@dataclass
class LiveCounter:
    """One camera stream: a frame that arrives while another is being scored is dropped, never queued (a
    queue would make the picture fall further behind the line every second), and counted.

    >>> counter = LiveCounter()
    >>> with counter.frame() as taken:   # doctest: +SKIP
    ...     if taken: ...score the frame...
    """

    processed: int = 0
    dropped: int = 0
    last_ms: float = 0.0
    _busy: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _count: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextlib.contextmanager
    def frame(self) -> Iterator[bool]:
        """Yields True when this frame is to be scored now, False when one is in progress (dropped)."""
        if not self._busy.acquire(blocking=False):
            with self._count:
                self.dropped += 1
            yield False
            return
        began = time.perf_counter()
        try:
            yield True
        finally:
            with self._count:
                self.processed += 1
                self.last_ms = 1000 * (time.perf_counter() - began)
            self._busy.release()

    def status(self) -> str:
        return (f"{self.processed} frames scored, {self.dropped} dropped while busy; last frame "
                f"{self.last_ms:.0f} ms")
