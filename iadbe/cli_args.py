"""Parsers of the command line's argument values (``--set KEY=VALUE``, ``--image-size 384x288``)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["coreset_sampling_ratio=0.04", "backbone=resnet18"]`` -> ``{"coreset_sampling_ratio": 0.04,
    "backbone": "resnet18"}``: each VALUE as JSON where it parses (numbers, true/false, lists), else text.
    Which names a detector takes is the library's check (``iadbe.models.factory.check_settings``)."""
    from iadbe.errors import SettingsError

    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise SettingsError(f"--set expects KEY=VALUE (e.g. coreset_sampling_ratio=0.04), got {item!r}")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    return settings


def image_size_arg(text: str) -> int | tuple[int, int]:
    """``256`` -> 256; ``384x288`` -> (384, 288) (height x width).

    Only the form is checked here; the range (and multiple of 32) is the library's check, so the CLI,
    the app and the API refuse a bad size with the same ``error: image size must be ...`` message.
    """
    parts = text.lower().replace(" ", "").split("x")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a size like 256 or 384x288, got {text!r}")
    return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])
