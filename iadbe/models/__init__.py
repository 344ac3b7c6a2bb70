"""Registry of the study's detectors: specs, factory and whether each runs here."""

from __future__ import annotations

from iadbe.models.availability import Availability, check_availability
from iadbe.models.factory import DetectorConfig, create_detector, resolve_config, validate_image_size
from iadbe.models.registry import DetectorSpec, all_specs, get_spec, normalize_name, register

__all__ = [
    "Availability", "DetectorConfig", "DetectorSpec", "all_specs", "check_availability", "create_detector",
    "get_spec", "list_models", "normalize_name", "register", "resolve_config", "validate_image_size",
]


def list_models(include_unavailable: bool = True) -> list[Availability]:
    """Every registered detector with whether it runs here (and why not)."""
    rows = [check_availability(spec) for spec in all_specs()]
    return rows if include_unavailable else [row for row in rows if row.runs_here]
