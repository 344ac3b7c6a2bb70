"""The data types of the dataset stage: one image (:class:`Sample`) and a split dataset (:class:`DatasetSplits`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NORMAL = 0
ANOMALOUS = 1
#: ``defect_type`` of the synthetic anomalies generated for validation.
SYNTHETIC_TYPE = "synthetic_perlin"


@dataclass(frozen=True)
class Sample:
    """One image: its label (0 normal, 1 anomalous), its mask (or ``None``) and its defect type."""

    image: Path
    label: int
    mask: Path | None = None
    defect_type: str = "good"

    def __post_init__(self) -> None:
        if self.label not in (NORMAL, ANOMALOUS):
            raise ValueError(f"label must be 0 (normal) or 1 (anomalous), got {self.label!r}")

    @property
    def is_anomalous(self) -> bool:
        """True for a defective image."""
        return self.label == ANOMALOUS


def seeded_key(sample: Sample, root: Path, seed: int, salt: str) -> str:
    """A sort key for seeded draws that is the same on every machine and in every checkout: sha256 of
    (seed, salt, the image's path relative to the dataset ``root``; its name when it lies elsewhere). An
    absolute path would deal other folds wherever the data sits somewhere else."""
    image = sample.image
    rel = image.relative_to(root).as_posix() if image.is_relative_to(root) else image.name
    return hashlib.sha256(f"{seed}|{salt}|{rel}".encode()).hexdigest()


def _split_counts(samples: list[Sample]) -> dict[str, Any]:
    """Counts of one split: normals, anomalies, masks, per defect type."""
    return {
        "total": len(samples),
        "normal": sum(not s.is_anomalous for s in samples),
        "anomalous": sum(s.is_anomalous for s in samples),
        "masks": sum(s.mask is not None for s in samples if s.is_anomalous),
        "per_type": dict(sorted(Counter(s.defect_type for s in samples).items())),
    }


def _fingerprint(samples: list[Sample]) -> str:
    """Short sha256 over the (image, label, mask) triples, to tell two splits apart."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.image)):
        digest.update(f"{s.image}|{s.label}|{s.mask or ''}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset split into train (normals only), val and test, with how val was built.

    ``val`` never holds a test image. ``notes`` are warnings and facts worth showing to a user.
    """

    name: str
    root: Path
    category: str | None
    layout: str
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    val_source: str
    notes: list[str] = field(default_factory=list)
    #: share of defective images in the split(s) the real validation defects came from (a YOLO export's train
    #: split, a val/ folder); None without real validation defects. Calibration weighs them by it.
    defect_share: float | None = None

    @property
    def splits(self) -> dict[str, list[Sample]]:
        """The three splits by name."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per split: total, normal, anomalous, masks (of anomalous images), per_type."""
        return {name: _split_counts(samples) for name, samples in self.splits.items()}

    def to_dict(self, include_samples: bool = False) -> dict[str, Any]:
        """JSON-able summary (for model metadata); the file lists only with ``include_samples``."""
        out: dict[str, Any] = {
            "name": self.name,
            "root": str(self.root),
            "category": self.category,
            "layout": self.layout,
            "val_source": self.val_source,
            "counts": self.counts(),
            "fingerprints": {name: _fingerprint(s) for name, s in self.splits.items()},
            "notes": list(self.notes),
            "defect_share": self.defect_share,
        }
        if include_samples:
            out["samples"] = {
                name: [
                    {"image": str(s.image), "label": s.label, "mask": str(s.mask) if s.mask else None,
                     "defect_type": s.defect_type}
                    for s in samples
                ]
                for name, samples in self.splits.items()
            }
        return out

    def report(self) -> str:
        """Human-readable summary: layout, counts per split and defect type, masks, validation, notes."""
        title = f"Dataset {self.name}" + (f" / {self.category}" if self.category else "")
        lines = [title, f"  root:   {self.root}", f"  layout: {self.layout}"]
        for name, c in self.counts().items():
            types = ", ".join(f"{t} {n}" for t, n in c["per_type"].items()) or "-"
            masks = _mask_phrase(c["masks"], c["anomalous"])
            lines.append(
                f"  {name:<5} {c['total']:>5} images: {c['normal']} normal, {c['anomalous']} anomalous"
                f" ({types}); {masks}"
            )
        lines.append(f"  validation: {self.val_source}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _mask_phrase(masks: int, anomalous: int) -> str:
    """'all 87 anomalous images have masks' / 'no masks' / '3 of 5 anomalous images have masks'."""
    if anomalous == 0:
        return "no anomalous images"
    if masks == anomalous:
        return f"masks for all {anomalous} anomalous images"
    if masks == 0:
        return "no masks"
    return f"masks for {masks} of {anomalous} anomalous images"


@dataclass
class RawSplits:
    """What a layout parser read, before the validation rule is applied (internal).

    ``train`` may hold anomalies (they go to val, never to test). ``pooled`` means the dataset has no
    official split: everything is in ``train`` and the loader draws a seeded test split from it.
    ``val`` is the dataset's own validation split, ``val_name`` says where it came from.
    """

    root: Path
    category: str | None
    layout: str
    train: list[Sample] = field(default_factory=list)
    val: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)
    val_name: str = ""
    pooled: bool = False
    notes: list[str] = field(default_factory=list)
