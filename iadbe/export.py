"""The inference graph shared by every backend, and its OpenVINO export.

The graph is ``normalise -> anomalib torch model -> (raw score, raw anomaly map)`` on input that is
already resized to the model's size (float N x 3 x H x W in [0, 1]). Resizing, score normalisation,
thresholds and rendering happen outside the graph in numpy, identically for torch and OpenVINO,
so both backends give the same numbers and the batch dimension stays truly dynamic (anomalib
2.7's own export fixed it at 2 for PatchCore and friends).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

OPENVINO_DIR = "openvino"
OPENVINO_XML = "model.xml"


def build_inference_graph(torch_model: Any, mean: tuple, std: tuple,
                          image_size: tuple[int, int] | None = None) -> Any:
    """Wrap an anomalib torch model (``module.model``) into the exportable graph, in eval mode.

    The model's Gaussian blurs become separable ones (same numbers, far fewer operations; see
    :func:`iadbe.models.graphs.separable_blurs`); its state dict is unchanged. With ``image_size``
    (the model's input size, the only one the graph is fed) PaDiM and PatchCore also get their
    size-fitted rewrites (:data:`iadbe.models.graphs.GRAPH_MODULES`).
    """
    import torch
    from torch import nn

    from iadbe.models.graphs import forward_for, separable_blurs

    separable_blurs(torch_model)

    class InferenceGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch_model
            self._forward = forward_for(torch_model, image_size)
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            output = self._forward((images - self.mean) / self.std)
            batch = images.shape[0]
            score = output.pred_score.reshape(batch)
            anomaly_map = output.anomaly_map
            if anomaly_map is None:  # image-level models (DFKDE, GANomaly): a 1x1 map holding the score
                anomaly_map = score.reshape(batch, 1, 1)
            return score, anomaly_map.reshape(batch, anomaly_map.shape[-2], anomaly_map.shape[-1])

    return InferenceGraph().eval()


def export_openvino(graph: Any, image_size: tuple[int, int], out_dir: Path) -> Path:
    """Convert ``graph`` to OpenVINO IR with a dynamic batch; return the path of ``model.xml``."""
    import openvino as ov
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 3, *image_size)
    with torch.no_grad():
        model = ov.convert_model(graph, example_input=example, input=[ov.PartialShape([-1, 3, *image_size])])
    model.outputs[0].get_tensor().set_names({"pred_score"})
    model.outputs[1].get_tensor().set_names({"anomaly_map"})
    xml = out_dir / OPENVINO_XML
    ov.save_model(model, xml, compress_to_fp16=False)
    return xml


def export_model_dir(model_dir: Path) -> Path:
    """Re-export the OpenVINO IR of a stored model from its safetensors weights (atomic swap)."""
    import shutil
    import tempfile

    from iadbe import store
    from iadbe.inference.loading import build_graph
    from iadbe.models import DetectorConfig

    model_dir = Path(model_dir)
    meta = store.read_config(model_dir)
    config = DetectorConfig.from_dict(meta["detector"])
    graph = build_graph(model_dir, config)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
    try:
        export_openvino(graph, config.image_size, staging)
        target = model_dir / OPENVINO_DIR
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    meta.pop("files", None)
    store.write_config(model_dir, meta)
    return model_dir / OPENVINO_DIR / OPENVINO_XML
