"""What an inspector is shown: a label per image and a region that agrees with it.

- An image labelled normal shows no region, whatever single pixels of its map do.
- An image labelled anomalous shows the pixels above the pixel threshold and, when there are none, the
  region around its peak: the connected part of the map above half-way between the map's median and its
  peak (the blob's half-maximum), so a flagged image is never shown with an empty mask.

The same function draws the app's and the CLI's masks and counts the pixel F1 of ``iadbe test``, so the
number measures what people see.
"""

from __future__ import annotations

import numpy as np

#: Radius of the fallback region, as a share of the shorter side, when the map is flat.
FLAT_MAP_RADIUS = 1 / 32


def decision_mask(anomaly_map: np.ndarray, anomalous: bool, threshold: float) -> np.ndarray:
    """Boolean mask (H, W) shown for an image with this map (any units, ``threshold`` in the same)."""
    if not anomalous:
        return np.zeros(anomaly_map.shape, bool)
    mask = anomaly_map > threshold
    return mask if mask.any() else peak_region(anomaly_map)


def peak_region(anomaly_map: np.ndarray) -> np.ndarray:
    """The connected region around the map's maximum, above half-way from the median to the peak."""
    import cv2

    amap = np.asarray(anomaly_map, dtype=np.float32)
    row, col = np.unravel_index(int(np.argmax(amap)), amap.shape)
    peak, median = float(amap[row, col]), float(np.median(amap))
    if peak > median:
        above = (amap >= (peak + median) / 2).astype(np.uint8)
        _, labels = cv2.connectedComponents(above, connectivity=8)
        region = labels == labels[row, col]
        if region.mean() < 0.5:  # a blob, not the whole image
            return region
    return _disk(amap.shape, row, col, max(1, round(min(amap.shape) * FLAT_MAP_RADIUS)))


def _disk(shape: tuple[int, ...], row: int, col: int, radius: int) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius**2


def decision_masks(maps: np.ndarray, anomalous: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`decision_mask` of every map in a (N, H, W) stack."""
    return np.stack([decision_mask(m, bool(a), threshold) for m, a in zip(maps, anomalous)]) if len(maps) else \
        np.zeros(np.shape(maps), bool)
