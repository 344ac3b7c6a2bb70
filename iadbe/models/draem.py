"""DRAEM's hook: the texture folder its simulated anomalies are drawn from."""

from __future__ import annotations

from typing import Any

from iadbe.errors import SettingsError


def prepare_args(kwargs: dict[str, Any], rebuilding: bool = False) -> dict[str, Any]:
    """The ``prepare_args`` hook: ``dtd_dir`` as anomalib's ``Draem`` takes it (a folder that exists)."""
    kwargs["dtd_dir"] = draem_texture_dir(kwargs.get("dtd_dir"), rebuilding=rebuilding)
    return kwargs


def draem_texture_dir(dtd_dir: str | None, rebuilding: bool = False) -> str:
    """The folder DRAEM draws its anomaly textures from (anomalib downloads DTD when it is missing).

    No folder given: an empty one, so the simulated anomalies are Perlin noise only. A given folder
    must hold images (searched recursively, as anomalib's ``PerlinAnomalyGenerator`` does). When a
    stored model is rebuilt the textures are not used, so a folder missing on this machine is fine.

    Raises:
        SettingsError: the given folder does not exist or holds no images (for training).
    """
    import pathlib

    from iadbe import constants

    empty = constants.IADBE_HOME / "empty_texture_dir"
    folder = pathlib.Path(dtd_dir).expanduser() if dtd_dir else None
    if folder is not None and rebuilding:
        return str(folder) if folder.is_dir() else _make_dir(empty)
    if folder is not None:
        if not folder.is_dir():
            raise SettingsError(f"DRAEM's texture folder (dtd_dir) {folder} does not exist; "
                                "give a folder of texture images (e.g. DTD's images/) or none for Perlin noise")
        if not _texture_images(folder):
            raise SettingsError(f"DRAEM's texture folder (dtd_dir) {folder} holds no images "
                                "(.jpg, .png, ...); give a folder of texture images or none for Perlin noise")
        return str(folder)
    return _make_dir(empty)


def _make_dir(folder: Any) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def _texture_images(folder: Any) -> list[Any]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return [path for ext in IMG_EXTENSIONS for path in folder.rglob("*" + ext)]
