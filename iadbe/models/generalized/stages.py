"""Backbone stages by stride, shared by the generalised detectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from iadbe.errors import SettingsError

#: The stages most of the study's detectors read (ResNet names; mapped by stride for other CNNs).
RESNET_STAGES_1_TO_3 = ("layer1", "layer2", "layer3")


@dataclass(frozen=True)
class Stage:
    """One feature stage of a backbone: its timm module name, channels and output stride."""

    name: str
    channels: int
    stride: int

    def size(self, input_size: Sequence[int]) -> tuple[int, int]:
        """(height, width) of this stage's feature map for an input of ``input_size``."""
        return -(-int(input_size[0]) // self.stride), -(-int(input_size[1]) // self.stride)


def init_anomalib_module(module: Any, pre_processor: Any, post_processor: Any, evaluator: Any, visualizer: Any,
                         needs_input_size: str | None = None) -> None:
    """``AnomalibModule.__init__`` only: anomalib's own ``__init__`` of the class we generalise would build its
    name-checked torch model, whose training step, optimiser and trainer arguments are all we reuse.

    ``needs_input_size``: the detector's name where its model is built for a fixed input size, which then
    must come from the pre-processor's Resize.
    """
    from anomalib.models.components import AnomalibModule

    AnomalibModule.__init__(module, pre_processor=pre_processor, post_processor=post_processor,
                            evaluator=evaluator, visualizer=visualizer)
    if needs_input_size and module.input_size is None:
        raise ValueError(f"{needs_input_size} needs the input size (a pre-processor with Resize)")


def backbone_stages(backbone: str, layers: Sequence[str] | None = None) -> list[Stage]:
    """The stages of ``backbone`` for ``layers`` (ResNet stage names or the backbone's own names).

    Without ``layers``: the stages of stride 4, 8 and 16 (ResNet's layer1..layer3).
    """
    from iadbe.models.layers import feature_info, map_layers

    names = map_layers(backbone, list(layers or RESNET_STAGES_1_TO_3))
    info = {name: (channels, reduction) for name, channels, reduction in feature_info(backbone)}
    return [Stage(name, *info[name]) for name in names]


def require_halving_strides(stages: Sequence[Stage], model: str) -> None:
    """Refuse stages whose strides do not double from one to the next (the models up/downsample by 2)."""
    strides = [stage.stride for stage in stages]
    if any(b != 2 * a for a, b in zip(strides, strides[1:])):
        raise SettingsError(
            f"{model} needs backbone stages whose strides double from one to the next "
            f"(such as 4, 8, 16); got strides {strides} for layers {[stage.name for stage in stages]}"
        )


def use_openvino_safe_softplus(module: Any) -> None:
    """Give every anomalib ``AllInOneBlock`` in ``module`` a global-scale activation OpenVINO converts.

    The blocks compute ``0.1 * Softplus(beta=0.5)``; OpenVINO's PyTorch frontend drops ``beta`` (see
    :mod:`iadbe.models.graphs`). The replacement is bitwise equal in torch, so training is unchanged.
    """
    from anomalib.models.components.flow import all_in_one_block

    from iadbe.models.graphs import _softplus_beta_half_times_tenth

    original = all_in_one_block._global_scale_softplus_activation  # noqa: SLF001
    for block in module.modules():
        if getattr(block, "global_scale_activation", None) is original:
            block.global_scale_activation = _softplus_beta_half_times_tenth
