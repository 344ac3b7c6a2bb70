"""Whether a detector runs on this machine, and if not, the true reason."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from iadbe.models.registry import DetectorSpec

#: Extra files some anomalib models download at start, and where anomalib looks for them.
_EXTRA_FILES = {
    "dsr_vq_model": "pre_trained/vq_model_pretrained_128_4096.pckl (downloaded by anomalib's DSR at start)",
    "efficientad_teacher": "pre_trained/efficientad_pretrained_weights (teacher weights zip, downloaded at start)",
    "imagenette": "datasets/imagenette (~1.5 GB, EfficientAD's penalty images, downloaded at start)",
}

#: How to install an optional package a detector needs (``("package", name)`` in its requirements).
_PACKAGE_HINTS = {"ultralytics": "pip install 'iadbe[yolo]' (or pip install ultralytics; AGPL-3.0)"}


@dataclass(frozen=True)
class Availability:
    model: str
    runs_here: bool
    backbone: str | None
    reason: str


def check_availability(spec: DetectorSpec, backbone: str | None = None) -> Availability:
    """Decide from what is on disk whether ``spec`` can be trained here now.

    A spec with an IADBE ``generalized`` implementation runs where anomalib's own cannot, as long as
    the chosen backbone's weights are here; the reason then says which implementation runs and why.
    """
    original = check_original_availability(spec, backbone)
    if original.runs_here or spec.generalized is None or not spec.anomalib_class:
        return original  # no anomalib class: IADBE's is the only implementation, and that check was its own
    from iadbe import backbones

    chosen = backbone or spec.default_backbone
    if chosen is not None and not backbones.timm_pretrained_available(chosen):
        return Availability(spec.name, False, chosen, f"needs pretrained weights of {chosen}; {original.reason}")
    why = original.reason if backbone is None else f"anomalib's {spec.display_name} does not accept {chosen}"
    return Availability(spec.name, True, chosen, f"IADBE's generalised implementation ({why})")


def check_original_availability(spec: DetectorSpec, backbone: str | None = None) -> Availability:
    """Whether anomalib's own implementation of ``spec`` can be trained here now."""
    from iadbe import backbones

    if spec.fixed_reason:
        return Availability(spec.name, False, None, spec.fixed_reason)
    if backbone is not None and spec.allowed_backbones is not None and backbone not in spec.allowed_backbones:
        allowed = ", ".join(spec.allowed_backbones)
        return Availability(spec.name, False, backbone, f"anomalib 2.7's {spec.display_name} accepts only {allowed}")
    missing: list[str] = []
    chosen = backbone or _runnable_backbone(spec)
    if spec.has_backbone and spec.allowed_backbones is None:
        if not backbones.timm_pretrained_available(chosen):
            missing.append(f"pretrained weights of {chosen}")
    elif spec.allowed_backbones is not None and chosen is None:
        names = ", ".join(spec.allowed_backbones)
        missing.append(f"pretrained weights of one of its fixed backbones ({names}); none is cached here")
    for kind, name in spec.extra_requirements:
        if chosen is None and ("{backbone}" in name or name in (spec.allowed_backbones or ())):
            continue  # already reported as a missing fixed backbone
        name = name.format(backbone=chosen)
        if kind == "torchvision" and not backbones.torchvision_weights_available(name):
            missing.append(f"torchvision's pretrained {name} weights (in $TORCH_HOME/hub/checkpoints)")
        elif kind == "timm" and not backbones.timm_pretrained_available(name):
            missing.append(f"timm weights {name}")
        elif kind == "file":
            missing.append(_EXTRA_FILES.get(name, name))
        elif kind == "package" and importlib.util.find_spec(name) is None:
            hint = _PACKAGE_HINTS.get(name, f"pip install {name}")
            return Availability(spec.name, False, chosen, f"needs the optional package {name}: {hint}")
    if missing:
        note = f"; {spec.notes}" if spec.notes else ""
        return Availability(spec.name, False, chosen, "needs " + "; ".join(missing) + " (not on this machine; anomalib would download it)" + note)
    return Availability(spec.name, True, chosen, spec.notes or "runs here")


def _runnable_backbone(spec: DetectorSpec) -> str | None:
    """The default backbone, or for fixed-backbone models the first allowed one with local weights."""
    from iadbe import backbones

    if spec.allowed_backbones is None:
        return spec.default_backbone or spec.study_backbone
    for name in (spec.study_backbone, *spec.allowed_backbones):
        if name and _fixed_backbone_available(spec, name, backbones):
            return name
    return None


def _fixed_backbone_available(spec: DetectorSpec, name: str, backbones) -> bool:  # noqa: ANN001
    if any(kind == "torchvision" for kind, _ in spec.extra_requirements):
        return backbones.torchvision_weights_available(name)
    return all(backbones.timm_pretrained_available(n) for n in spec.backbone_weights.get(name, (name,)))
