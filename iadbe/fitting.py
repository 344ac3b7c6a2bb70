"""Fitting a detector: anomalib's Lightning fit, or the detector's own ``fit`` hook (supervised detectors).

:func:`fit_detector` is what :func:`iadbe.training.train` calls; progress is reported as the fraction of
the fit done (``train`` maps it onto its own bar).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from iadbe import constants
from iadbe.models.fit_request import FitProgress, FitRequest


@dataclass
class Fitted:
    """A fitted detector: its torch model (eval mode, CPU), the epochs trained, what the fit reported."""

    model: Any
    epochs_trained: float | None
    record: dict[str, Any] = field(default_factory=dict)


def fit_detector(spec: Any, module: Any, train: Sequence[Any], val: Sequence[Any], config: Any, batch_size: int,
                 progress: FitProgress, max_minutes: float | None = None, seed: int = 0) -> Fitted:
    """Fit ``module`` (built by ``create_detector``) on ``train``: with the spec's ``fit`` hook where it has
    one (it may use ``val``), else with Lightning on the normal images."""
    hook = spec.hook("fit")
    if hook is None:
        epochs = lightning_fit(module, train, config, batch_size, progress, max_minutes, seed=seed)
        return Fitted(module.model, epochs)
    request = FitRequest(module=module, train=list(train), val=list(val), config=config, batch_size=batch_size,
                         progress=progress, max_minutes=max_minutes, seed=seed)
    model = hook(request)
    model.cpu().eval()
    record = dict(request.record)
    epochs = record.pop("epochs_trained", None)
    return Fitted(model, None if epochs is None else round(float(epochs), 2), record)


def lightning_fit(module: Any, samples: Sequence[Any], config: Any, batch_size: int, progress: FitProgress,
                  max_minutes: float | None = None, seed: int = 0) -> float:
    """Fit ``module``; returns the epochs trained (batches done / batches per epoch: fewer than asked when
    ``max_minutes`` ran out, possibly part of one)."""
    import lightning.pytorch as pl
    import torch

    from iadbe.data.training_set import make_train_loader

    loader = make_train_loader(samples, config.image_size, batch_size, seed=seed)  # the run's seed: its order
    trainer_args = dict(getattr(module, "trainer_arguments", {}) or {})
    for key in ("val_check_interval", "check_val_every_n_epoch", "num_sanity_val_steps", "devices"):
        trainer_args.pop(key, None)
    trainer_args.setdefault("max_epochs", config.max_epochs)
    if config.max_epochs != trainer_args["max_epochs"] and trainer_args["max_epochs"] != 1:
        trainer_args["max_epochs"] = config.max_epochs
    counter = _ProgressCallback(progress, len(loader))
    trainer = pl.Trainer(
        accelerator="gpu" if torch.cuda.is_available() else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[counter],
        max_time={"seconds": max_minutes * 60} if max_minutes else None,
        default_root_dir=str(constants.IADBE_HOME / "lightning"),
        **trainer_args,
    )
    reports_fit = hasattr(module.model, "fit_progress")  # e.g. PatchCore's coreset selection
    if reports_fit:
        module.model.fit_progress = _fit_phase_progress(progress)
    try:
        trainer.fit(module, train_dataloaders=loader)
    finally:
        if reports_fit:
            module.model.fit_progress = None
    module.cpu().eval()
    return round(counter.batches / max(1, len(loader)), 2)


def _ProgressCallback(progress: FitProgress, batches: int) -> Any:  # noqa: N802 (factory of a Callback)
    from lightning.pytorch import Callback

    class ProgressCallback(Callback):
        batches = 0  # training batches done, over all epochs

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.batches += 1
            epochs = max(1, trainer.max_epochs or 1)
            done = (trainer.current_epoch + (batch_idx + 1) / max(1, batches)) / epochs
            progress(min(done, 1.0) * 0.9, f"epoch {trainer.current_epoch + 1}/{epochs}, "
                                                  f"batch {batch_idx + 1}/{batches}")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            epochs = max(1, trainer.max_epochs or 1)
            if trainer.current_epoch + 1 >= epochs:
                progress(0.9, "fitting the model (memory bank / statistics)")

    return ProgressCallback()


def _fit_phase_progress(progress: FitProgress) -> Callable[[int, int], None]:
    """``(done, total)`` of a model's own fit phase (the last tenth of the fit's share), with an ETA."""
    started: dict[str, float] = {}  # time of the phase's first report

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started.setdefault("at", time.perf_counter())
        fraction = min(1.0, done / max(1, total))
        eta = f", about {elapsed * (1 - fraction) / fraction:.0f} s left" if fraction > 0.02 else ""
        progress((0.9 + 0.1 * fraction), f"fitting the model (memory bank): {done}/{total}{eta}")

    return report
