"""Typed errors. Each inherits from :class:`IADBEError` and a builtin, and says what to do next."""

from __future__ import annotations


class IADBEError(Exception):
    """Base class of every error IADBE raises on purpose (shown to users as-is)."""


class DatasetError(IADBEError, ValueError):
    """A dataset folder or archive is missing, malformed or unsafe."""


class ImageError(IADBEError, ValueError):
    """An image cannot be decoded or is outside the accepted limits."""


class VideoError(IADBEError, ValueError):
    """A video cannot be decoded, holds no frame, or is outside the accepted limits."""


class BackboneUnavailableError(IADBEError, RuntimeError):
    """A backbone's pretrained weights cannot be found here and cannot be downloaded."""


class ModelUnavailableError(IADBEError, RuntimeError):
    """A detector cannot run here (missing weights, removed from anomalib, ...)."""


class ModelFormatError(IADBEError, ValueError):
    """A stored model directory, config or weights file is missing, corrupt or does not match."""


class UnsafeCheckpointError(ModelFormatError):
    """A checkpoint would need unpickling, which IADBE refuses for downloaded files."""


class SettingsError(IADBEError, ValueError):
    """A user setting (image size, epochs, threshold, ...) is out of range."""


class StoreError(IADBEError, OSError):
    """The model store cannot be written (read-only, disk full, ...)."""


class QuotaError(IADBEError, PermissionError):
    """A visitor's workspace limit (disk, number of models, trainings at once) would be exceeded."""


class WorkspaceError(IADBEError, LookupError):
    """A model or folder is not in the visitor's workspace (it does not exist, or it belongs to someone else)."""


class TrainingError(IADBEError, RuntimeError):
    """A training run failed for a reason outside the user's settings (e.g. a detector's trainer crashed)."""
