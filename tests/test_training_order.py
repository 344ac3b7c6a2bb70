"""The run's seed decides the order of the training batches (issue 16: the loader was always seeded with 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

try:  # tests/ as a package or as a plain folder on sys.path
    from .test_model_smoke import dataset, home  # noqa: F401 (fixtures)
except ImportError:
    from test_model_smoke import dataset, home  # noqa: F401 (fixtures)


class _Recorded(Exception):
    """Stops the run once the first epoch's order is known (the fit itself is not needed here)."""


def test_same_seed_same_order_other_seed_other_order(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iadbe.data import load_dataset, training_set
    from iadbe.training import train

    original = training_set.make_train_loader
    orders: list[list[str]] = []

    def recording(*args, **kwargs):
        loader = original(*args, **kwargs)
        orders.append([Path(path).name for batch in loader for path in batch.image_path])
        raise _Recorded

    monkeypatch.setattr(training_set, "make_train_loader", recording)
    splits = load_dataset("folder", dataset, seed=0)  # the same training images for every run
    for seed in (1, 1, 2):
        with pytest.raises(_Recorded):
            train("padim", "folder", dataset, splits=splits, backbone="tf_efficientnet_lite0", image_size=64,
                  max_epochs=1, batch_size=4, seed=seed, export=False)
    assert len(orders[0]) == len(splits.train) >= 8
    assert orders[0] == orders[1]
    assert orders[2] != orders[0] and sorted(orders[2]) == sorted(orders[0])
