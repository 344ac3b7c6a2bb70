"""The detectors of the IADBE study, with the study's hyperparameters as defaults.

A registry keyed by name (like timm's ``register_model``) with one small factory,
:func:`create_detector`. Each :class:`DetectorSpec` says which backbone layers the
study used (as ResNet stage names); for any other timm CNN the same stages are
found by stride from the backbone's ``feature_info`` (see :mod:`iadbe.models.layers`).

A detector is its entry here: what it needs beyond anomalib's defaults travels with the entry as
*hooks* (a ``"module:function"`` imported when first used, or a callable), so the factory, the
training, the graph builder and the availability check never switch on a detector's name. Adding a
detector: docs/ARCHITECTURE.md, "Adding a detector".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Union

STUDY = "IADBE study (anomalib 1.x)"
#: Minutes the app's Training tab stops a detector that trains for several epochs after, unless the user
#: asks otherwise: at the study's epochs they take 30 minutes (FRE) to hours (GANomaly, DRAEM, DSR) on two
#: CPU cores (docs/benchmark/tire_all_models.md). 0 in the tab trains the study's epochs.
INTERACTIVE_TIME_CAP_MINUTES = 5.0

#: A hook: ``"module:function"`` (imported on first use, so the registry stays light) or a callable.
Hook = Union[str, Callable[..., Any]]


@dataclass(frozen=True)
class DetectorSpec:
    """Everything IADBE knows about one detector."""

    name: str
    display_name: str
    anomalib_class: str  # attribute of ``anomalib.models``
    family: str  # topic in the study's taxonomy
    in_study: bool = True
    #: Default backbone of the study (None: the model has no backbone argument).
    study_backbone: str | None = None
    #: Backbone used here by default when the study's one has no weights on this machine.
    default_backbone: str | None = "tf_efficientnet_lite0"
    #: Study layers as ResNet stage names ("layer1".. "layer4"); mapped by stride for other CNNs.
    layers: tuple[str, ...] = ()
    #: Name of the init argument that takes the layers ("layers" or "layer" for a single one).
    layers_arg: str | None = "layers"
    #: Other study hyperparameters (init arguments).
    defaults: dict[str, Any] = field(default_factory=dict)
    max_epochs: int = 1
    train_batch_size: int = 16
    #: True: the model yields an anomaly map (segmentation); False: image score only.
    segmentation: bool = True
    #: Backbones this model's anomalib implementation accepts (None: any timm CNN).
    allowed_backbones: tuple[str, ...] | None = None
    #: Weights or files the model needs beyond the backbone, as (kind, name) pairs checked by
    #: :mod:`iadbe.models.availability`.
    extra_requirements: tuple[tuple[str, str], ...] = ()
    #: Backbone names that stand for several timm models, with the weights each needs (U-Flow's "mcait").
    backbone_weights: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: IADBE's own implementation ("module:Class" or the class: an anomalib ``AnomalibModule`` subclass taking
    #: the same init arguments) used where anomalib's class cannot run with the chosen backbone here:
    #: a backbone outside ``allowed_backbones``, or missing weights/files. See ``choose_implementation``.
    #: With ``anomalib_class`` empty it is the detector's only implementation.
    generalized: str | type | None = None
    #: Why it can never run here (e.g. removed from anomalib); None when it can in principle.
    fixed_reason: str | None = None
    #: ``(backbone, image_size, init_args) -> dict``: init arguments computed from the chosen backbone and
    #: size (``init_args``: the defaults with the mapped layers; the user's settings are applied after).
    derive_args: Hook | None = None
    #: ``() -> dict``: IADBE-side settings that are no init argument (e.g. PatchCore's ``coreset_method``),
    #: with their defaults; stored under ``detector.extra``, settable like init arguments.
    iadbe_settings: Hook | None = None
    #: ``(extra) -> None``: refuse bad values of those settings before any data is read.
    check_iadbe_settings: Hook | None = None
    #: ``(kwargs, rebuilding) -> kwargs``: the init arguments as the class takes them (DRAEM's texture folder).
    prepare_args: Hook | None = None
    #: ``(torch_model, extra) -> None``: changes to the built torch model (PatchCore's coreset selection,
    #: PaDiM's covariance fit); also applied when a stored model is rebuilt.
    after_build: Hook | None = None
    #: ``(torch_model, image_size or None) -> forward``: the forward of the inference graph where the class's
    #: own does not trace for any batch or has a faster exact rewrite (:mod:`iadbe.models.graphs`); it may
    #: also refuse a model that cannot give scores. None: the torch model's own forward.
    graph: Hook | None = None
    #: ``(init_args) -> int``: fewest normal training images the fit needs (default 2: a covariance).
    min_train_images: Hook | None = None
    #: Trains on labelled defects (anomalous ``Sample``s with masks, :mod:`iadbe.data.samples`) beside normal
    #: images. ``train`` refuses training data without labelled defects and says what is missing; a detector
    #: with ``supervised=False`` (an anomaly detector) never sees a defect in training: ``train`` refuses
    #: training data holding one (:func:`iadbe.data.supervised.check_training_samples`).
    supervised: bool = False
    #: ``(request: iadbe.models.fitting.FitRequest) -> torch_model``: trains a detector that anomalib's
    #: Lightning fit does not (YOLO through ultralytics, the U-Net). The request carries the module
    #: ``create_detector`` built (``request.module``), the training samples (normals and, for a supervised
    #: detector, labelled defects with masks), the validation samples, the ``DetectorConfig``, the batch size,
    #: a progress callback ``(fraction of the fit in [0, 1], message)``, the time cap in minutes (None: none),
    #: the seed and ``record``, a dict whose entries (``epochs_trained``, ``stopped_by_time_cap``, ...) go to
    #: iadbe.json. It returns the fitted torch model in eval mode on the CPU; its ``state_dict()`` is stored
    #: and loads into ``create_detector(config, pre_trained=False).model`` when the model is rebuilt. Its
    #: forward follows the graph contract (``InferenceBatch(pred_score, anomaly_map)`` in eval mode).
    #: None: anomalib's Lightning fit (``iadbe.fitting.lightning_fit``).
    fit: Hook | None = None
    #: anomalib builds part of the model with pretrained weights whatever ``pre_trained`` says (STFPM's
    #: teacher, SuperSimpleNet's extractor, Dinomaly's encoder): rebuilding a stored model needs them here.
    always_pretrained: bool = False
    #: The app's default training time cap for this detector; None: :data:`INTERACTIVE_TIME_CAP_MINUTES`
    #: when it trains for more than one epoch, no cap when it fits in one pass.
    time_cap_minutes: float | None = None
    #: Share of good pixels its pixel threshold flags by default, where its maps need another one than
    #: :data:`iadbe.calibration.DEFAULT_PIXEL_FALSE_ALARM_RATE` (None: that one).
    pixel_false_alarm_rate: float | None = None
    #: What one benchmark or zoo job of this detector asks a Ray cluster for (``iadbe benchmark --executor
    #: ray``): CPUs, and a GPU share where the cluster has GPUs (None: a whole GPU when it trains for more
    #: than one epoch, a quarter for a one-pass fit; :func:`iadbe.benchmark.executors.job_resources`).
    job_cpus: float = 2.0
    job_gpus: float | None = None
    #: The graph's second output is candidate boxes ``(N, A, 6)``, not an anomaly map (:mod:`iadbe.boxes`).
    boxes: bool = False
    #: What a model card must say of the software the detector is trained with (YOLO: Ultralytics' AGPL-3.0).
    license_note: str = ""
    notes: str = ""

    @property
    def has_backbone(self) -> bool:
        return self.layers_arg is not None or self.study_backbone is not None

    @property
    def interactive_time_cap(self) -> float | None:
        """Minutes the app caps a training of this detector at by default (None: no cap needed)."""
        if self.time_cap_minutes is not None:
            return self.time_cap_minutes
        return INTERACTIVE_TIME_CAP_MINUTES if self.max_epochs > 1 else None

    def hook(self, name: str) -> Callable[..., Any] | None:
        """The hook ``name`` (a field above) as a callable, imported on first use; None where not set."""
        return resolve_hook(getattr(self, name))


def resolve_hook(hook: Hook | type | None) -> Any:
    """``"module:attribute"`` -> the attribute (imported now); a callable or None as given."""
    if hook is None or not isinstance(hook, str):
        return hook
    module_name, _, attribute = hook.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


_REGISTRY: dict[str, DetectorSpec] = {}


def register(spec: DetectorSpec) -> DetectorSpec:
    """Add a detector (a plugin or a test can register its own: nothing else needs editing)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"detector {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> DetectorSpec:
    """Remove a registered detector (a test's, once it is done); returns its spec."""
    return _REGISTRY.pop(normalize_name(name))


def get_spec(name: str) -> DetectorSpec:
    """Return the spec of ``name`` (case and '-'/'_' insensitive)."""
    key = normalize_name(name)
    if key not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        from iadbe.errors import SettingsError

        raise SettingsError(f"unknown model {name!r}; known models: {known}")
    return _REGISTRY[key]


def all_specs() -> list[DetectorSpec]:
    return list(_REGISTRY.values())


def normalize_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return _ALIASES.get(key, key)


_ALIASES = {
    "rd": "reverse_distillation",
    "reversedistillation": "reverse_distillation",
    "cs_flow": "csflow",
    "u_flow": "uflow",
    "fast_flow": "fastflow",
    "efficientad": "efficient_ad",
    "efficient_ad": "efficient_ad",
    "super_simple_net": "supersimplenet",
    "stpfm": "stfpm",
}


register(DetectorSpec(
    name="padim", display_name="PaDiM", anomalib_class="Padim", family="Memory Bank",
    study_backbone="resnet18", layers=("layer1", "layer2", "layer3"),
    defaults={}, max_epochs=1, train_batch_size=32, derive_args="iadbe.models.padim:derive_args",
    iadbe_settings="iadbe.models.padim:iadbe_settings", after_build="iadbe.models.padim:after_build",
    graph="iadbe.models.padim:graph",
    notes="n_features: 100 for resnet18 (study), else chosen for the backbone",
))
register(DetectorSpec(
    name="patchcore", display_name="PatchCore", anomalib_class="Patchcore", family="Memory Bank",
    study_backbone="wide_resnet50_2", layers=("layer2", "layer3"),
    defaults={"coreset_sampling_ratio": 0.1, "num_neighbors": 9}, max_epochs=1, train_batch_size=32,
    iadbe_settings="iadbe.models.patchcore:iadbe_settings",
    check_iadbe_settings="iadbe.models.patchcore:check_iadbe_settings",
    after_build="iadbe.models.patchcore:after_build", graph="iadbe.models.patchcore:graph",
    # The threshold that best outlines real defects flags 0.05-0.08 % of good validation pixels on tire,
    # capsules and transistor (PaDiM: 0.5-0.7 %); at the common 1 % the masks spread far around each defect
    # (pixel F1 46-92 % of the oracle; 91-100 % at 0.1 %). bench/decisions.py.
    pixel_false_alarm_rate=0.001,
))
register(DetectorSpec(
    name="cflow", display_name="CFLOW", anomalib_class="Cflow", family="Distribution Map",
    study_backbone="wide_resnet50_2", layers=("layer2", "layer3", "layer4"),
    defaults={"fiber_batch_size": 64, "coupling_blocks": 8, "clamp_alpha": 1.9, "lr": 0.0001},
    max_epochs=50, train_batch_size=16, graph="iadbe.models.graphs:cflow_graph",
))
register(DetectorSpec(
    name="dfkde", display_name="DFKDE", anomalib_class="Dfkde", family="Distribution Map",
    study_backbone="resnet18", layers=("layer4",),
    defaults={"n_pca_components": 16, "max_training_points": 40000}, max_epochs=1, train_batch_size=32,
    segmentation=False, graph="iadbe.models.dfkde:graph", min_train_images="iadbe.models.dfkde:min_train_images",
))
register(DetectorSpec(
    name="dfm", display_name="DFM", anomalib_class="Dfm", family="Distribution Map",
    study_backbone="resnet50", layers=("layer3",), layers_arg="layer",
    defaults={"pooling_kernel_size": 4, "pca_level": 0.97, "score_type": "fre"}, max_epochs=1,
    train_batch_size=32, graph="iadbe.models.graphs:dfm_graph",
))
register(DetectorSpec(
    name="fre", display_name="FRE", anomalib_class="Fre", family="Reconstruction-based",
    study_backbone="resnet50", layers=("layer3",), layers_arg="layer",
    defaults={"pooling_kernel_size": 2, "latent_dim": 220}, max_epochs=220, train_batch_size=32,
    derive_args="iadbe.models.graphs:fre_derive_args", graph="iadbe.models.graphs:fre_graph",
))
register(DetectorSpec(
    name="stfpm", display_name="STFPM", anomalib_class="Stfpm", family="Teacher Student",
    study_backbone="resnet18", layers=("layer1", "layer2", "layer3"),
    defaults={}, max_epochs=100, train_batch_size=32, always_pretrained=True,
))
register(DetectorSpec(
    name="ganomaly", display_name="GANomaly", anomalib_class="Ganomaly", family="Reconstruction-based",
    study_backbone=None, default_backbone=None, layers_arg=None,
    defaults={"n_features": 64, "latent_vec_size": 100, "extra_layers": 0, "add_final_conv_layer": True,
              "wadv": 1, "wcon": 50, "wenc": 1, "lr": 0.0002, "beta1": 0.5, "beta2": 0.999},
    max_epochs=100, train_batch_size=32, segmentation=False,
))
register(DetectorSpec(
    name="draem", display_name="DRAEM", anomalib_class="Draem", family="Reconstruction-based",
    study_backbone=None, default_backbone=None, layers_arg=None,
    defaults={"enable_sspcab": False, "sspcab_lambda": 0.1, "beta": (0.1, 1.0)},
    max_epochs=700, train_batch_size=8, prepare_args="iadbe.models.draem:prepare_args",
    notes="without a texture folder (DTD) the anomalies are Perlin noise only; pass dtd_dir to use textures",
))
register(DetectorSpec(
    name="supersimplenet", display_name="SuperSimpleNet", anomalib_class="Supersimplenet",
    family="Discriminative", in_study=False, study_backbone="wide_resnet50_2.tv_in1k",
    layers=("layer2", "layer3"), defaults={"perlin_threshold": 0.2, "supervised": False},
    max_epochs=300, train_batch_size=32, always_pretrained=True,
))
register(DetectorSpec(
    name="cfa", display_name="CFA", anomalib_class="Cfa", family="Memory Bank",
    study_backbone="wide_resnet50_2", layers_arg=None,
    allowed_backbones=("vgg19_bn", "resnet18", "wide_resnet50_2"),
    extra_requirements=(("torchvision", "{backbone}"),),
    defaults={"gamma_c": 1, "gamma_d": 1, "num_nearest_neighbors": 3, "num_hard_negative_features": 3,
              "radius": 1e-5},
    max_epochs=30, train_batch_size=32, generalized="iadbe.models.generalized.cfa:GeneralizedCfa",
    notes="anomalib 2.7 builds its backbone from torchvision with DEFAULT weights",
))
register(DetectorSpec(
    name="csflow", display_name="CS-Flow", anomalib_class="Csflow", family="Distribution Map",
    study_backbone="efficientnet_b5", default_backbone="tf_efficientnet_lite2", layers_arg=None,
    allowed_backbones=("efficientnet_b5",), extra_requirements=(("torchvision", "efficientnet_b5"),),
    defaults={"cross_conv_hidden_channels": 1024, "n_coupling_blocks": 4, "clamp": 3, "num_channels": 3},
    max_epochs=240, train_batch_size=16, generalized="iadbe.models.generalized.csflow:GeneralizedCsflow",
    notes="anomalib 2.7 hard-codes torchvision's pretrained EfficientNet-B5; IADBE's runs the same flow on the "
          "stride-32 stage of any timm CNN (default EfficientNet-Lite2); image size a multiple of 128 px",
))
register(DetectorSpec(
    name="fastflow", display_name="FastFlow", anomalib_class="Fastflow", family="Distribution Map",
    study_backbone="resnet18", layers_arg=None,
    allowed_backbones=("cait_m48_448", "deit_base_distilled_patch16_384", "resnet18", "wide_resnet50_2"),
    defaults={"flow_steps": 8, "conv3x3_only": False, "hidden_ratio": 1.0}, max_epochs=500,
    train_batch_size=32, generalized="iadbe.models.generalized.fastflow:GeneralizedFastflow",
))
register(DetectorSpec(
    name="reverse_distillation", display_name="Reverse Distillation", anomalib_class="ReverseDistillation",
    family="Teacher Student", study_backbone="wide_resnet50_2", layers=("layer1", "layer2", "layer3"),
    allowed_backbones=("resnet18", "resnet34", "resnet50", "wide_resnet50_2", "resnet101", "wide_resnet101_2",
                       "resnet152"),
    defaults={"anomaly_map_mode": "add"}, max_epochs=200, train_batch_size=32,
    generalized="iadbe.models.generalized.reverse_distillation:GeneralizedReverseDistillation",
    notes="anomalib 2.7's decoder is a table of ResNet names",
))
register(DetectorSpec(
    name="uflow", display_name="U-Flow", anomalib_class="Uflow", family="One Class Classification",
    study_backbone="mcait", layers_arg=None, allowed_backbones=("mcait", "resnet18", "wide_resnet50_2"),
    extra_requirements=(("timm", "cait_m48_448"), ("timm", "cait_s24_224")),
    backbone_weights={"mcait": ("cait_m48_448", "cait_s24_224")},
    defaults={"flow_steps": 4, "affine_clamp": 2.0, "affine_subnet_channels_ratio": 1.0, "permute_soft": False},
    max_epochs=200, train_batch_size=16, generalized="iadbe.models.generalized.uflow:GeneralizedUflow",
))
register(DetectorSpec(
    name="dsr", display_name="DSR", anomalib_class="Dsr", family="Reconstruction-based",
    study_backbone=None, default_backbone=None, layers_arg=None,
    extra_requirements=(("file", "dsr_vq_model"),),
    # vq_train_ratio is IADBE's (anomalib's Dsr has no such argument); anomalib's class is only chosen
    # where its downloaded VQ file is present, which availability never reports (see _EXTRA_FILES).
    defaults={"latent_anomaly_strength": 0.2, "upsampling_train_ratio": 0.7, "vq_train_ratio": 0.3}, max_epochs=700,
    train_batch_size=8, generalized="iadbe.models.generalized.dsr:GeneralizedDsr",
    notes="anomalib 2.7 downloads the pretrained VQ model vq_model_pretrained_128_4096.pckl (trained on ImageNet) "
          "at start; IADBE's trains that VQ model first, on the category's normal training images "
          "(vq_train_ratio of the steps), then DSR's own phases",
))
register(DetectorSpec(
    name="efficient_ad", display_name="EfficientAD", anomalib_class="EfficientAd", family="Teacher Student",
    # study_backbone: the paper distils its teacher from WideResNet-101; IADBE's distils from the chosen
    # backbone. distillation_ratio is IADBE's; anomalib's class needs the downloaded teacher, never here.
    in_study=False, study_backbone="wide_resnet101_2", default_backbone="tf_efficientnet_lite0", layers_arg=None,
    extra_requirements=(("file", "efficientad_teacher"), ("file", "imagenette")),
    defaults={"teacher_out_channels": 384, "model_size": "small", "distillation_ratio": 0.3}, max_epochs=200,
    train_batch_size=1,
    generalized="iadbe.models.generalized.efficient_ad:GeneralizedEfficientAd",
    notes="anomalib 2.7 downloads the pretrained teacher and Imagenette (~1.5 GB) at training start; IADBE's "
          "distils the PDN teacher from the backbone's stride-8/16 features on the training images "
          "(distillation_ratio of the steps) and uses scikit-image's images as penalty images; images >= 256 px",
))
register(DetectorSpec(
    name="dinomaly", display_name="Dinomaly", anomalib_class="Dinomaly", family="Reconstruction-based",
    in_study=False, study_backbone=None, default_backbone=None, layers_arg=None,
    extra_requirements=(("timm", "vit_base_patch14_reg4_dinov2.lvd142m"),),
    defaults={}, max_epochs=15, train_batch_size=8, always_pretrained=True,
    notes="needs pretrained DINOv2 ViT weights",
))
register(DetectorSpec(
    name="unet_lite0", display_name="U-Net Lite0 (supervised)", anomalib_class="", family="Supervised segmentation",
    # not a detector of the study: the supervised baseline of issue 18, trained on labelled defects' masks
    in_study=False, study_backbone="tf_efficientnet_lite0", default_backbone="tf_efficientnet_lite0", layers_arg=None,
    defaults={"decoder_channels": [128, 64, 32, 16, 8], "learning_rate": 1e-3}, max_epochs=30, train_batch_size=8,
    generalized="iadbe.models.unet:UnetLite", derive_args="iadbe.models.unet:derive_args",
    supervised=True, fit="iadbe.models.unet:fit", time_cap_minutes=5.0,
    notes="segmentation-models-pytorch U-Net on timm's EfficientNet-Lite encoder (ImageNet weights, offline), "
          "trained with BCE + Dice on defect masks (YOLO boxes as box masks); map = sigmoid of the logits, "
          "score = max of the 5x5-blurred map",
))
register(DetectorSpec(
    name="rkde", display_name="RKDE", anomalib_class="", family="Distribution Map",
    study_backbone=None, default_backbone=None, layers_arg=None, segmentation=False,
    fixed_reason=(
        "RKDE was removed in anomalib 2.x, and its region extractor is a Faster R-CNN trained on COCO "
        "whose weights must be downloaded; no detector without downloaded weights is available here"
    ),
))


def _register_yolo() -> None:
    """The YOLO detectors (optional package ultralytics, AGPL-3.0; :mod:`iadbe.models.yolo`)."""
    from iadbe.models.yolo import YOLO_MODELS

    for name, yaml_name, display, study_column in YOLO_MODELS:
        register(DetectorSpec(
            name=name, display_name=display, anomalib_class="", family="Supervised detection",
            in_study=False, study_backbone=None, default_backbone=None, layers_arg=None,
            defaults={"model_yaml": yaml_name, "names": ["defect"]}, max_epochs=100, train_batch_size=16,
            segmentation=False, supervised=True, boxes=True, extra_requirements=(("package", "ultralytics"),),
            generalized="iadbe.models.yolo:YoloDetector", graph="iadbe.models.yolo:graph",
            fit="iadbe.models.yolo_fit:fit", iadbe_settings="iadbe.models.yolo:iadbe_settings",
            check_iadbe_settings="iadbe.models.yolo:check_iadbe_settings",
            license_note="Trained with Ultralytics YOLO (https://github.com/ultralytics/ultralytics), which is "
                         "licensed under AGPL-3.0; check its terms before using or sharing this model.",
            notes=f"Ultralytics {yaml_name}, trained from scratch on the labelled defects (boxes from masks)"
                  + (f"; the study's Cardboard table has {study_column}" if study_column else ""),
        ))


_register_yolo()
