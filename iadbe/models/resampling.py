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

import math
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


#: Extent of the thin maps that read off the row and column operators (see :func:`fit_map_resampler`);
#: larger than the blur's reflect padding (16 at sigma 4) so the padding stays valid.
_THIN_MAP, _THIN_IMAGE = 4, 64


def fit_map_resampler(to_map: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor], map_size: tuple[int, int],
                      image_size: tuple[int, int], device: Any = "cpu") -> MapResampler | None:
    """A :class:`MapResampler` computing ``to_map(scores, image_size)`` (``(B, 1, h, w) -> (B, 1, H, W)``), or
    ``None`` when that is not a separable linear map (checked on a random input at the real sizes).

    ``to_map(scores, out_size)`` must accept other sizes too: the row operator is read off ``h`` thin maps
    (h x 4 -> H x 64), the column operator off ``w`` flat ones (4 x w -> 64 x W), so fitting costs a few
    maps' worth of work instead of ``h + w`` full-size maps (4 s at 512 px). Each read-out carries the
    other direction's operator applied to ones at its first pixel; three all-ones maps give that factor.
    ``to_map`` runs on ``device`` (where the model's blur kernel is); the matrices are returned on the CPU.
    """
    h, w = (int(side) for side in map_size)
    H, W = (int(side) for side in image_size)  # noqa: N806 - the paper's notation: map h x w, image H x W

    def cpu_map(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return to_map(scores.to(device), size).float().cpu()

    def corner_of_ones(map_hw: tuple[int, int], out_hw: tuple[int, int]) -> float:
        return float(cpu_map(torch.ones(1, 1, *map_hw), out_hw)[0, 0, 0, 0])

    with torch.no_grad():
        full = corner_of_ones((h, w), (H, W))
        thin, flat = corner_of_ones((h, _THIN_MAP), (H, _THIN_IMAGE)), corner_of_ones((_THIN_MAP, w), (_THIN_IMAGE, W))
        if not all(math.isfinite(c) and abs(c) > 1e-6 for c in (full, thin, flat)):
            return None
        rows_in = torch.zeros(h, 1, h, _THIN_MAP)
        rows_in[torch.arange(h), 0, torch.arange(h), :] = 1  # map i: row i set
        cols_in = torch.zeros(w, 1, _THIN_MAP, w)
        cols_in[torch.arange(w), 0, :, torch.arange(w)] = 1  # map j: column j set
        rows = cpu_map(rows_in, (H, _THIN_IMAGE))[:, 0, :, 0].transpose(0, 1)  # rows[:, i] * s_thin[0]
        cols = cpu_map(cols_in, (_THIN_IMAGE, W))[:, 0, 0, :].transpose(0, 1)  # t_flat[0] * cols[:, j]
        # thin = t[0] s_thin[0], flat = t_flat[0] s[0], full = t[0] s[0]: s_thin[0] t_flat[0] = thin * flat / full
        resampler = MapResampler(rows, cols * (full / (thin * flat)))
        probe = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(0)) * 10
        expected = cpu_map(probe, (H, W))
        if tuple(expected.shape[-2:]) != (H, W):
            return None
        if not torch.allclose(resampler(probe), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max())):
            return None
    return resampler
