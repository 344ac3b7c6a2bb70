"""YOLO detectors (Ultralytics) beside the anomaly detectors: a supervised detector that gives boxes.

What Ultralytics does: ``YOLO("yolov8n.pt").train(data=...)`` downloads pretrained weights, fonts and an
AMP-check model, sends usage events and reads/writes a settings file, all in the calling process. What IADBE
does instead:

- the network is a ``DetectionModel`` built from the model's YAML shipped inside ``ultralytics`` (no
  pretrained weights here), optionally started from the user's own weights (``--set weights=...``);
- training runs in a subprocess (:mod:`iadbe.models.yolo_fit`) whose environment alone carries Ultralytics'
  offline settings, so the app's process is never changed; plots and AMP are off, the dataset dict is handed
  over directly (Ultralytics' dataset check would fetch a font);
- the stored model is IADBE's model directory: ``weights.safetensors`` (the ``DetectionModel``'s state dict)
  and the OpenVINO IR of :func:`graph`, which stops before non-maximum suppression; NMS runs in numpy
  (:func:`decode_boxes`), the same code after either backend, so both give the same boxes at any batch size.

How boxes fit the backend contract (``run(batch) -> (scores, second output)``, docs/ARCHITECTURE.md):
the score is the highest box confidence of the image (before NMS: NMS never drops the best box), and the
second output holds the candidate boxes ``(N, A, 6)``: ``x0, y0, x1, y1, confidence, class`` per anchor,
in pixels of the model's input. :mod:`iadbe.boxes` turns those into boxes and a box map.

Ultralytics is AGPL-3.0 and optional: ``pip install 'iadbe[yolo]'``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

#: The YOLO versions of the IADBE study's Cardboard table (and the current ones), as
#: (registry name, Ultralytics YAML, display name, the study's version column).
YOLO_MODELS = (
    ("yolov3_tiny", "yolov3-tiny.yaml", "YOLOv3-tiny", "YOLOV3"),
    ("yolov5n", "yolov5n.yaml", "YOLOv5n", "YOLOV5"),
    ("yolov6n", "yolov6n.yaml", "YOLOv6n", "YOLOV6"),
    ("yolov8n", "yolov8n.yaml", "YOLOv8n", "YOLOV8"),
    ("yolov8s", "yolov8s.yaml", "YOLOv8s", "YOLOV8"),
    ("yolov8m", "yolov8m.yaml", "YOLOv8m", "YOLOV8"),
    ("yolov9c", "yolov9c.yaml", "YOLOv9c", "YOLOV9"),
    ("yolov10n", "yolov10n.yaml", "YOLOv10n", "YOLOV10"),
    ("yolo11n", "yolo11n.yaml", "YOLO11n", ""),
)
INSTALL_HINT = "pip install 'iadbe[yolo]' (or: pip install ultralytics; AGPL-3.0)"


def ultralytics_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ultralytics") is not None


def require_ultralytics() -> None:
    """Raise :class:`~iadbe.errors.ModelUnavailableError` with how to install it when ultralytics is absent."""
    if not ultralytics_available():
        from iadbe.errors import ModelUnavailableError

        raise ModelUnavailableError(f"YOLO detectors need the optional package ultralytics: {INSTALL_HINT}")


def iadbe_settings() -> dict[str, Any]:
    """``weights``: a local ``.pt`` / ``.safetensors`` file or an ``hf://`` reference to a ``.safetensors`` file
    to start training from (layers whose shapes fit are taken); None: from scratch."""
    return {"weights": None}


def check_iadbe_settings(extra: dict[str, Any]) -> None:
    weights = extra.get("weights")
    if weights in (None, ""):
        return
    from iadbe.errors import SettingsError

    text = str(weights)
    if text.startswith("hf://"):
        if not text.split("@")[0].endswith(".safetensors"):
            raise SettingsError(f"weights {text}: an hf:// reference must name a .safetensors file (downloads are "
                                "never unpickled)")
        return
    from pathlib import Path

    path = Path(text).expanduser()
    if not path.is_file() or path.suffix not in (".pt", ".safetensors"):
        raise SettingsError(f"weights {text}: not a .pt or .safetensors file")


class YoloDetector:
    """The module the factory builds: ``.model`` is Ultralytics' ``DetectionModel`` from the YAML.

    Args:
        model_yaml: an Ultralytics model YAML name (``yolov8n.yaml``: the scale letter picks the size).
        names: the defect classes, in the order of the label files' class ids.
    """

    def __init__(self, model_yaml: str = "yolov8n.yaml", names: tuple[str, ...] | list[str] = ("defect",),
                 pre_processor: Any = None, post_processor: Any = None, evaluator: Any = None,
                 visualizer: Any = None) -> None:
        del pre_processor, post_processor, evaluator, visualizer  # the factory passes anomalib's to every class
        require_ultralytics()
        from iadbe.models.process_state import import_keeping_process_state

        tasks = import_keeping_process_state("ultralytics.nn.tasks")  # its import patches PIL, torch, cv2, ...
        self.names = list(names)
        layout = {**tasks.yaml_model_load(model_yaml), "nc": len(self.names)}  # nc set here: no "Overriding nc" line
        self.model = tasks.DetectionModel(layout, ch=3, nc=len(self.names), verbose=False)
        self.model.names = dict(enumerate(self.names))
        head = self.model.model[-1]
        if getattr(head, "one2one_cv2", None) is not None:
            head.end2end = False  # v10/26's NMS-free head: use the one-to-many outputs and IADBE's NMS
        self.model.eval()

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> Any:
        """No normalisation: Ultralytics feeds RGB in [0, 1] (the factory reads mean 0, std 1 from this)."""
        from torchvision.transforms.v2 import Compose, Resize

        return SimpleNamespace(transform=Compose([Resize(image_size or (640, 640))]))

    def cpu(self) -> "YoloDetector":
        self.model.cpu()
        return self

    def eval(self) -> "YoloDetector":
        self.model.eval()
        return self


def graph(torch_model: Any, image_size: tuple[int, int] | None) -> Any:
    """The forward of the inference graph: images in [0, 1] -> (best confidence (N,), candidates (N, A, 6)).

    Candidates are ``x0, y0, x1, y1`` (pixels of the input), the best class confidence and that class's id,
    for every anchor; no NMS (:func:`iadbe.boxes.decode_boxes` does it in numpy).
    """
    del image_size
    import torch
    from anomalib.data import InferenceBatch

    # The head caches its anchors per input shape: a trace would see them computed on the first call and
    # cached on the next (OpenVINO's trace check refuses that). Recomputed every call they are the same
    # constants in the exported graph, and a few microseconds in torch.
    torch_model.model[-1].dynamic = True

    def forward(images: torch.Tensor) -> Any:
        output = torch_model(images)
        predictions = output[0] if isinstance(output, (tuple, list)) else output  # (N, 4 + nc, A), xywh
        boxes, classes = predictions[:, :4, :], predictions[:, 4:, :]
        confidence, class_id = classes.max(dim=1)
        half = boxes[:, 2:4, :] / 2
        corners = torch.cat([boxes[:, 0:2, :] - half, boxes[:, 0:2, :] + half], dim=1)
        candidates = torch.cat([corners, confidence.unsqueeze(1), class_id.unsqueeze(1).to(corners.dtype)], dim=1)
        return InferenceBatch(pred_score=confidence.amax(dim=1), anomaly_map=candidates.transpose(1, 2))

    return forward
