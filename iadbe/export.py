"""OpenVINO export of the inference graph (:mod:`iadbe.graph`), with a dynamic batch dimension."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

OPENVINO_DIR = "openvino"
OPENVINO_XML = "model.xml"


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
    from iadbe.graph import rebuild_graph
    from iadbe.models import DetectorConfig

    model_dir = Path(model_dir)
    meta = store.read_config(model_dir)
    config = DetectorConfig.from_dict(meta["detector"])
    graph = rebuild_graph(model_dir, config)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
    try:
        export_openvino(graph, config.image_size, staging)
        target = model_dir / OPENVINO_DIR
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    meta.pop("files", None)
    meta["precision"] = _recheck_precisions(model_dir / OPENVINO_DIR / OPENVINO_XML, meta, config, graph)
    if meta["precision"] is None:
        meta.pop("precision")
    store.write_config(model_dir, meta)
    return model_dir / OPENVINO_DIR / OPENVINO_XML


def _recheck_precisions(xml: Path, meta: dict[str, Any], config: Any, graph: Any) -> dict[str, Any] | None:
    """The lower-precision check again, on the validation images iadbe.json names where they are still on
    disk (synthetic anomalies are not kept); None without any, so that ``auto`` runs f32."""
    from iadbe.data.samples import ANOMALOUS, NORMAL, Sample
    from iadbe.calibration import Calibration
    from iadbe.precision import check_export

    images = (meta.get("calibration") or {}).get("images") or {}
    samples = [Sample(Path(path), label) for key, label in (("normal", NORMAL), ("real_defects", ANOMALOUS))
               for path in images.get(key) or () if Path(path).is_file()]
    if not samples or "postprocess" not in meta:
        logger.warning("%s: its validation images are not on this machine; the lower precisions stay unchecked "
                       "and precision=auto runs f32", xml.parent.parent)
        return None
    return check_export(xml, samples, config.image_size, Calibration.from_dict(meta["postprocess"]), graph)
