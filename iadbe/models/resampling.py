"""Anomaly-map upsampling and blurring as two small matrix products.

anomalib turns a patch-score map (h x w) into an image-size anomaly map (H x W) by interpolating it
(bilinear for PaDiM, nearest for PatchCore) and blurring it with a Gaussian (33 x 33 at sigma 4,
reflect padding). Both steps are linear and act on rows and columns separately, so together they are
``rows @ scores @ cols.T`` with ``rows`` (H x h) and ``cols`` (W x w) fixed by the sizes. Two matmuls of
that size cost about a tenth of the interpolation + two blur passes they replace (0.6-0.7 ms of
PaDiM's 8 ms in OpenVINO here, see docs/notes/performance.md).

The matrices are read off the model's own interpolation and blur (one map per row and per column),
and kept only if they reproduce it on a random map; otherwise the model keeps its own steps.
This module imports torch: import it only where a graph is built.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class MapResampler(nn.Module):
    """``(B, 1, h, w) -> rows @ scores @ cols.T``: the anomaly map at image size."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("rows", rows.contiguous(), persistent=False)
        self.register_buffer("cols_t", cols.transpose(0, 1).contiguous(), persistent=False)

    def fits(self, scores: torch.Tensor, image_size: Any) -> bool:
        """Whether ``scores`` (B, 1, h, w) -> ``image_size`` are the sizes these matrices were fitted for."""
        return (scores.shape[1] == 1 and tuple(scores.shape[-2:]) == (self.rows.shape[1], self.cols_t.shape[0])
                and tuple(int(side) for side in image_size) == (self.rows.shape[0], self.cols_t.shape[1]))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows.to(scores.dtype), scores), self.cols_t.to(scores.dtype))


def fit_map_resampler(to_map: Callable[[torch.Tensor], torch.Tensor], map_size: tuple[int, int],
                      image_size: tuple[int, int], device: Any = "cpu") -> MapResampler | None:
    """A :class:`MapResampler` computing ``to_map`` (``(B, 1, h, w) -> (B, 1, H, W)``), or ``None`` when
    ``to_map`` is not a separable linear map to ``image_size`` (checked on a random input). ``to_map`` runs
    on ``device`` (where the model's blur kernel is); the matrices are returned on the CPU."""
    h, w = (int(side) for side in map_size)

    def cpu_map(scores: torch.Tensor) -> torch.Tensor:
        return to_map(scores.to(device)).float().cpu()

    with torch.no_grad():
        corner = cpu_map(torch.ones(1, 1, h, w))[0, 0, 0, 0]
        if not torch.isfinite(corner) or abs(float(corner)) < 1e-6:
            return None
        rows_in = torch.zeros(h, 1, h, w)
        rows_in[torch.arange(h), 0, torch.arange(h), :] = 1  # map i: row i set, every column
        cols_in = torch.zeros(w, 1, h, w)
        cols_in[torch.arange(w), 0, :, torch.arange(w)] = 1
        # to_map(row i) = rows[:, i] x (cols @ 1) and to_map(ones) = (rows @ 1) x (cols @ 1): the corner
        # value divides out the scale that the row and column read-outs share.
        rows = cpu_map(rows_in)[:, 0, :, 0].transpose(0, 1)
        cols = cpu_map(cols_in)[:, 0, 0, :].transpose(0, 1) / corner
        resampler = MapResampler(rows, cols)
        probe = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(0)) * 10
        expected = cpu_map(probe)
        if tuple(expected.shape[-2:]) != tuple(int(side) for side in image_size):
            return None
        if not torch.allclose(resampler(probe), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max())):
            return None
    return resampler
