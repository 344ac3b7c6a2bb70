"""Backbone layers by stride: the study named ResNet stages; other CNNs get the stage of equal stride."""

from __future__ import annotations

from functools import lru_cache

#: Output stride of each ResNet stage, the study's layer names.
RESNET_STAGE_STRIDE = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


@lru_cache(maxsize=32)
def feature_info(backbone: str) -> tuple[tuple[str, int, int], ...]:
    """(module name, channels, reduction) of each feature stage of a timm backbone (no weights loaded)."""
    import timm

    model = timm.create_model(backbone, pretrained=False, features_only=True, exportable=True)
    return tuple((info["module"], info["num_chs"], info["reduction"]) for info in model.feature_info.info)


def map_layers(backbone: str, layers: tuple[str, ...] | list[str]) -> list[str]:
    """Translate ResNet stage names to ``backbone``'s layers of the same stride.

    Names that are not ResNet stages, or backbones that have them, are returned unchanged.
    """
    stages = feature_info(backbone)
    names = {name for name, _, _ in stages}
    mapped = []
    for layer in layers:
        if layer in names or layer not in RESNET_STAGE_STRIDE:
            mapped.append(layer)
            continue
        stride = RESNET_STAGE_STRIDE[layer]
        candidates = [name for name, _, reduction in stages if reduction == stride]
        if not candidates:
            from iadbe.errors import SettingsError

            raise SettingsError(f"backbone {backbone} has no feature stage with stride {stride} (for {layer})")
        mapped.append(candidates[-1])
    return mapped


def feature_shape(backbone: str, layer: str, image_size: tuple[int, int]) -> tuple[int, int, int]:
    """(channels, height, width) of ``layer`` (a ResNet stage name or the backbone's own) at ``image_size``."""
    (name,) = map_layers(backbone, [layer])
    for module, channels, reduction in feature_info(backbone):
        if module == name:
            return channels, -(-image_size[0] // reduction), -(-image_size[1] // reduction)
    from iadbe.errors import SettingsError

    raise SettingsError(f"backbone {backbone} has no layer {layer}")
