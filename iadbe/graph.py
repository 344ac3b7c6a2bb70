"""The inference graph: built here, and only here, for training, export, loading and evaluation.

The graph is ``normalise -> the detector's torch model -> (raw score, raw anomaly map)`` on input that is
already resized to the model's size (float N x 3 x H x W in [0, 1]). Resizing, score normalisation,
thresholds and rendering happen outside the graph in numpy, identically for torch and OpenVINO,
so both backends give the same numbers and the batch dimension stays truly dynamic (anomalib
2.7's own export fixed it at 2 for PatchCore and friends).

:func:`build_inference_graph` wraps a trained torch model (``module.model``); :func:`rebuild_graph`
rebuilds one from a model directory (``iadbe.json`` + ``weights.safetensors``). The detector's own
forward comes from its registry entry's ``graph`` hook (:mod:`iadbe.models.registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from iadbe.errors import ModelFormatError, UnsafeCheckpointError


def build_inference_graph(torch_model: Any, config: Any, *, forward: Callable[[Any], Any] | None = None) -> Any:
    """Wrap a torch model (``module.model``) of the detector ``config`` describes into the exportable graph,
    in eval mode.

    Args:
        torch_model: the detector's torch model, fitted.
        config: its :class:`~iadbe.models.DetectorConfig` (registry name, mean/std, the input size).
        forward: the forward to use instead of the one the detector's ``graph`` hook gives (benchmarks).
    Returns:
        An ``nn.Module``: images (N x 3 x H x W in [0, 1]) -> (scores (N,), maps (N x h x w)).

    The model's Gaussian blurs become separable ones (same numbers, far fewer operations; see
    :func:`iadbe.models.graphs.separable_blurs`); its state dict is unchanged.
    """
    import torch
    from torch import nn

    from iadbe.models import get_spec
    from iadbe.models.graphs import separable_blurs

    separable_blurs(torch_model)
    if forward is None:
        hook = get_spec(config.model).hook("graph")
        size = tuple(int(side) for side in config.image_size)
        forward = hook(torch_model, size) if hook is not None else torch_model
    mean, std = config.mean, config.std

    class InferenceGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch_model
            self._forward = forward
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


def rebuild_graph(model_dir: Path, config: Any, *, trust_pickle: bool = False) -> Any:
    """Rebuild the torch inference graph from the config and ``weights.safetensors`` (or, only with
    ``trust_pickle``, the pickled weights of a local directory).

    Raises:
        UnsafeCheckpointError: pickled weights without ``trust_pickle``.
        ModelFormatError: the config cannot be rebuilt or the weights do not fit it.
    """
    from iadbe import store
    from iadbe.models import create_detector

    pickled = store.pickled_weights(model_dir)
    if pickled is not None and not trust_pickle:
        raise UnsafeCheckpointError(f"{pickled}: pickled weights are loaded only with trust_local_pickle=True")
    weights_path = pickled or model_dir / store.WEIGHTS_FILE
    state = store.load_trusted_pickle(pickled) if pickled else store.load_weights(weights_path)
    try:
        module = create_detector(config, pre_trained=False)
    except (ValueError, TypeError, KeyError) as error:
        raise ModelFormatError(f"{model_dir / store.CONFIG_FILE}: cannot rebuild {config.model} ({error})") from None
    load_state_resizing_buffers(module.model, state, weights_path)
    return build_inference_graph(module.model, config)


def load_state_resizing_buffers(model: Any, state: dict[str, Any], path: Path) -> None:
    """``load_state_dict(strict=True)``, first giving data-sized buffers (memory banks, Gaussian
    statistics) the stored shapes; a parameter of another shape means the file does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelFormatError(f"{path}: the weights do not fit the model in iadbe.json ({detail})")
    buffers = dict(model.named_buffers())
    for key, value in state.items():
        if own[key].shape == value.shape:
            continue
        if key not in buffers:
            raise ModelFormatError(
                f"{path}: the weights do not fit the model in iadbe.json "
                f"({key}: stored {tuple(value.shape)}, expected {tuple(own[key].shape)})"
            )
        owner, _, name = key.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        module._buffers[name] = value.clone()  # noqa: SLF001 (resize a registered buffer)
    model.load_state_dict(state, strict=True)
