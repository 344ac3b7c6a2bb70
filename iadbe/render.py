"""Pictures of a prediction, drawn with numpy and OpenCV (no matplotlib, no windows).

The heatmap colour scale is anchored to the model's calibration: 0.5 is the threshold on every
image, so the same colour means the same evidence everywhere (nothing is stretched per image).
"""

from __future__ import annotations

import functools
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from iadbe.errors import SettingsError, StoreError

RED = (255, 40, 40)
YELLOW = (255, 220, 0)
GREEN = (40, 200, 80)
DISPLAY_JPEG_QUALITY = 95


def _check_opacity(opacity: float) -> float:
    if not 0.0 <= float(opacity) <= 1.0:
        raise SettingsError(f"opacity must be in [0, 1], got {opacity!r}")
    return float(opacity)


def colorize(anomaly_map: np.ndarray) -> np.ndarray:
    """RGB uint8 JET colours of a normalised map (0 blue, 0.5 = threshold green-yellow, 1 red)."""
    import cv2

    scaled = np.clip(anomaly_map * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(cv2.merge([scaled, scaled, scaled]), _jet_rgb())  # applyColorMap's colours, in RGB, contiguous


@functools.lru_cache(maxsize=1)
def _jet_rgb() -> np.ndarray:
    """OpenCV's JET colour map as a 256-entry RGB lookup table."""
    import cv2

    grey = np.arange(256, dtype=np.uint8)[:, None]
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def heatmap_overlay(image: np.ndarray, anomaly_map: np.ndarray | None, opacity: float = 0.5) -> np.ndarray:
    if anomaly_map is None:
        return image.copy()
    return _blend(image, colorize(anomaly_map), _check_opacity(opacity))


def mask_overlay(image: np.ndarray, mask: np.ndarray | None, opacity: float = 0.5) -> np.ndarray:
    import cv2

    if mask is None or not mask.any():  # a normal image: nothing to blend
        return image.copy()
    red = np.empty_like(image)
    for channel, value in enumerate(RED):
        red[..., channel] = value
    blended = _blend(image, red, _check_opacity(opacity))
    return cv2.copyTo(blended, mask.astype(np.uint8), image.copy())


def _blend(image: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    """``image * (1 - alpha) + colour * alpha`` in uint8, rounded to the nearest grey level (ties may go
    either way: one grey level). OpenCV's weighted sum: 0.1 ms for a 341x256 picture, where float32 maths
    took 0.3 ms and the mask's boolean indexing 3.8 ms on a fully flagged picture (issue 17: /predict)."""
    import cv2

    return cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, np.ascontiguousarray(colour), alpha, 0.0)


def contour_overlay(image: np.ndarray, mask: np.ndarray | None, thickness: int | None = None) -> np.ndarray:
    import cv2

    out = np.ascontiguousarray(image.copy())
    if mask is None or not mask.any():
        return out
    thickness = thickness or max(1, round(min(image.shape[:2]) / 200))
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, YELLOW, thickness)
    return out


def box_overlay(image: np.ndarray, boxes: Any, thickness: int | None = None) -> np.ndarray:
    """A box detector's boxes (:class:`iadbe.boxes.Box`, image pixels) with their class and confidence."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    height, width = out.shape[:2]
    thickness = thickness or max(1, round(min(height, width) / 200))
    scale = max(0.35, min(height, width) / 700)
    for box in boxes:
        x0, y0 = int(round(box.x0)), int(round(box.y0))
        x1, y1 = max(x0 + 1, int(round(box.x1)) - 1), max(y0 + 1, int(round(box.y1)) - 1)
        cv2.rectangle(out, (x0, y0), (x1, y1), YELLOW, thickness)
        text = f"{box.label} {box.raw_score:.2f}".strip()
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y0 - th - base - 2 if y0 - th - base - 2 >= 0 else min(y0 + thickness, height - th - base - 2)
        cv2.rectangle(out, (x0, top), (min(width - 1, x0 + tw + 4), top + th + base + 2), YELLOW, -1)
        cv2.putText(out, text, (x0 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return out


def outline(prediction: Any, picture: np.ndarray) -> np.ndarray:
    """The decision drawn on ``picture``: a box detector's boxes above the threshold, else the mask's contours."""
    if prediction.boxes:
        return box_overlay(picture, prediction.shown_boxes)
    return contour_overlay(picture, prediction.mask)


def mask_image(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """The binary mask as a black/white RGB picture."""
    if mask is None:
        return np.zeros((*shape, 3), np.uint8)
    return np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)


def mask_png(mask: np.ndarray) -> bytes:
    """The boolean mask as a one-channel PNG (0 / 255), encoded with :func:`png_params`."""
    import cv2

    ok, data = cv2.imencode(".png", mask.astype(np.uint8) * 255, png_params())
    if not ok:
        raise StoreError("could not encode the mask as PNG")
    return data.tobytes()


def mask_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """The outer outline of each region of the mask, as ``[[x, y], ...]`` pixel corners (OpenCV's simple
    chain: straight runs kept as their two ends), largest region first."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=cv2.contourArea, reverse=True)
    return [contour.reshape(-1, 2).tolist() for contour in contours]


def panel(views: dict[str, np.ndarray], caption: str = "") -> np.ndarray:
    """Views side by side with a title above each and an optional caption line below."""
    import cv2

    height = max(view.shape[0] for view in views.values())
    bar = max(18, height // 14)
    tiles = []
    for title, view in views.items():
        if view.shape[0] != height:
            width = round(view.shape[1] * height / view.shape[0])
            view = cv2.resize(view, (width, height), interpolation=cv2.INTER_AREA)
        tile = np.full((height + bar, view.shape[1], 3), 255, np.uint8)
        tile[bar:] = view
        _text(tile, title, (4, bar - 5), bar / 30)
        tiles.append(tile)
        tiles.append(np.full((height + bar, 4, 3), 255, np.uint8))
    out = np.concatenate(tiles[:-1], axis=1)
    if caption:
        foot = np.full((bar + 4, out.shape[1], 3), 255, np.uint8)
        _text(foot, caption, (4, bar - 2), bar / 30)
        out = np.concatenate([out, foot], axis=0)
    return out


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    import cv2

    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, max(0.35, scale), (20, 20, 20), 1, cv2.LINE_AA)


def render_prediction(prediction: Any, opacity: float = 0.5, threshold: float | None = None,
                      with_panel: bool = True) -> dict[str, np.ndarray]:
    """All pictures of one prediction: original, heatmap, mask, contours and (``with_panel``) a captioned
    side-by-side panel of the four."""
    if threshold is not None:
        prediction = prediction.with_threshold(threshold)
    image, amap, mask = prediction.image, prediction.anomaly_map, prediction.mask
    views = {
        "original": image,
        "heatmap": heatmap_overlay(image, amap, opacity),
        "mask": mask_overlay(image, mask, opacity),
        "contours": outline(prediction, image),  # a box detector: its boxes with their confidence
    }
    if with_panel:
        caption = (f"{prediction.name}: {prediction.label_text} (score {prediction.score:.3f}, "
                   f"threshold {prediction.threshold:.2f})")
        views["panel"] = panel(dict(views), caption)
    return views


def frame_overlay(prediction: Any, opacity: float = 0.5, index: int | None = None) -> np.ndarray:
    """One picture per video or camera frame: the heatmap, the outline of the region shown for the decision,
    and a banner with the frame number, the score and the label (red when anomalous, green when normal)."""
    import cv2

    picture = outline(prediction, heatmap_overlay(prediction.image, prediction.anomaly_map, opacity))
    height, width = picture.shape[:2]
    bar = max(14, min(40, height // 12))
    colour = RED if prediction.label else GREEN
    picture[:bar] = (picture[:bar].astype(np.uint16) + np.asarray(colour, np.uint16) * 3) // 4
    where = f"frame {index}  " if index is not None else ""
    text = f"{where}{prediction.score:.3f} {prediction.label_text}"
    cv2.putText(picture, text, (4, bar - max(3, bar // 5)), cv2.FONT_HERSHEY_SIMPLEX, bar / 34, (255, 255, 255), 1,
                cv2.LINE_AA)
    if prediction.label:
        edge = max(2, min(height, width) // 100)
        for part in (picture[:, :edge], picture[:, -edge:], picture[-edge:]):
            part[:] = RED
    return picture


def new_output_dir(root: Path) -> Path:
    """A fresh folder per request, so concurrent requests never overwrite each other's files."""
    folder = Path(root) / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def save_views(views: dict[str, np.ndarray], folder: Path, stem: str, fmt: str = "png") -> dict[str, Path]:
    """Write each view as ``<stem>_<kind>.<fmt>``, encoded on parallel threads (OpenCV releases the GIL).

    ``png`` (the default, for files a user keeps: CLI output, batch archives) is lossless
    (:func:`png_params`). ``jpeg`` is for pictures only looked at (the app's views): quality
    :data:`DISPLAY_JPEG_QUALITY`, 0.25 ms and about 20 kB per 341x256 view against 2 ms and 100-120 kB
    as PNG, which is what a Space's visitor downloads for every prediction and every slider move.
    """
    if fmt not in ENCODINGS:
        raise SettingsError(f"view format must be one of {', '.join(ENCODINGS)}, got {fmt!r}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / f"{stem}_{kind}.{ENCODINGS[fmt][0]}" for kind in views}
    list(_encoder_pool().map(functools.partial(_write_view, params=ENCODINGS[fmt][1]()), paths.values(),
                             views.values()))
    return paths


def png_params() -> list[int]:
    """OpenCV PNG settings for the views: zlib level 1, Huffman-only, every row "Sub"-filtered: 2.3 ms
    per 341x256 view against 3.9 ms with OpenCV's level 1 and adaptive filters, and 7 % smaller files
    (Gradio's own PNG encoding of the same arrays took 30 ms). Lossless."""
    import cv2

    return [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
            cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]


def jpeg_params() -> list[int]:
    """Quality :data:`DISPLAY_JPEG_QUALITY` with full-resolution colour (4:4:4): the default 4:2:0 halves
    the colour resolution and smears the one-pixel red mask edges and yellow contours (largest error on
    a photograph 55 grey levels, 18 with 4:4:4)."""
    import cv2

    return [cv2.IMWRITE_JPEG_QUALITY, DISPLAY_JPEG_QUALITY, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


#: format -> (file suffix, OpenCV encoder settings)
ENCODINGS: dict[str, tuple[str, Callable[[], list[int]]]] = {"png": ("png", png_params), "jpeg": ("jpg", jpeg_params)}


def _write_view(path: Path, picture: np.ndarray, params: list[int]) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(picture[..., ::-1]), params):
        raise StoreError(f"could not write {path} (is the disk full or the folder read-only?)")


@functools.lru_cache(maxsize=1)
def _encoder_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="iadbe-png")
