"""What a detector's own ``fit`` hook is given (``DetectorSpec.fit``; docs/ARCHITECTURE.md, "Adding a detector").

anomalib's detectors are fitted by Lightning (:func:`iadbe.fitting.lightning_fit`). A detector that trains
another way (a supervised one: YOLO through ultralytics, the U-Net of :mod:`iadbe.models.unet`) names a
``fit`` hook in its registry entry; :func:`iadbe.fitting.fit_detector` calls it with one
:class:`FitRequest` and stores the torch model it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

#: ``(fraction of the fit done, in [0, 1], message) -> None``
FitProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class FitRequest:
    """One training of a detector by its own ``fit`` hook.

    Attributes:
        module: what ``create_detector(config, pre_trained=True)`` built (an anomalib ``AnomalibModule``);
            ``module.model`` is the torch model whose ``state_dict()`` a stored model reloads.
        train: the training samples: normal images and, for a supervised detector, labelled defects
            (anomalous :class:`~iadbe.data.samples.Sample` with ``mask``; YOLO boxes arrive as box masks).
        val: the validation samples (normals, real or synthetic defects); never a test image. The
            thresholds are calibrated on them after the fit; a hook may use them for early stopping.
        config: the :class:`~iadbe.models.DetectorConfig` (image size, mean/std, init arguments, ``extra``).
        batch_size: the training batch size asked for.
        progress: ``(fraction of the fit, message)``.
        max_minutes: stop training after this long (None: train ``config.max_epochs``).
        seed: the run's seed (data order, augmentations).
        record: facts the hook reports for iadbe.json (``epochs_trained``, ``stopped_by_time_cap``, ...).
    """

    module: Any
    train: Sequence[Any]
    val: Sequence[Any]
    config: Any
    batch_size: int
    progress: FitProgress
    max_minutes: float | None = None
    seed: int = 0
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def deadline_s(self) -> float | None:
        """The time cap in seconds (None: none)."""
        return None if self.max_minutes is None else self.max_minutes * 60.0
