"""What a dataset offers each kind of detector, in plain words (the Training tab's "what was found").

Anomaly detectors train on the normal training images; supervised detectors (``DetectorSpec.supervised``)
also need labelled defects, which :func:`iadbe.data.supervised.supervised_splits` shares between training and
validation (set aside from the test split where none is outside it). :func:`summarize_labels` counts both from the same splits that
``train`` uses, so what it says is what a training run would do. Tested in ``tests/test_label_summary.py``
on real data.
"""

from __future__ import annotations

from dataclasses import dataclass

from iadbe.data.samples import SYNTHETIC_TYPE, DatasetSplits
from iadbe.data.supervised import labelled_defects, supervised_splits


@dataclass(frozen=True)
class LabelSummary:
    """Counts of one dataset as each kind of detector would use it (real images only)."""

    good: int  #: normal images in all splits
    defects: int  #: real defective images in all splits
    labelled: int  #: of them with a mask (or YOLO label drawn as one)
    label_source: str  #: "masks" or "YOLO labels"
    normal_train: int  #: normal images an anomaly detector trains on
    val_images: int  #: real validation images (anomaly detectors)
    val_defects: int  #: real defects among them
    synthetic: int  #: synthetic validation anomalies (made when no real defect is outside the test split)
    test_images: int
    test_defects: int
    supervised_train: int  #: labelled defects a supervised detector trains on
    supervised_val: int  #: labelled defects that stay in validation for a supervised detector
    test_labelled: int  #: labelled defects in a supervised detector's test split (never trained on)
    from_test: int = 0  #: labelled test defects set aside for a supervised detector (none outside the test split)
    defect_share: float | None = None  #: defect share of the split the validation defects came from

    @property
    def supervised_ready(self) -> bool:
        """A supervised detector can train on this dataset (it has labelled defects outside the test split)."""
        return self.supervised_train > 0

    def text(self) -> str:
        """A few sentences: what was found, what anomaly and supervised detectors would train and test on."""
        if self.defects:
            if not self.labelled:
                labels = "none labelled: no masks or boxes"
            else:
                share = "all" if self.labelled == self.defects else str(self.labelled)
                labels = f"{share} with {self._labels_phrase()}"
            found = f"{self.good} good images, {self.defects} defective images ({labels})."
        else:
            found = f"{self.good} good images, no defective images."
        validation = f"{self.val_images - self.val_defects} good"
        validation += f" and {self.val_defects} defective" if self.val_defects else ""
        if self.synthetic:
            validation += f" images plus {self.synthetic} synthetic defects"
        else:
            validation += " images"
        weighed = (f", weighed as the {100 * self.defect_share:.2g} % of defects their source split holds"
                   if self.val_defects and self.defect_share else "")
        anomaly = (f"Anomaly detectors train on {self.normal_train} good images; {validation} set their threshold "
                   f"(validation{weighed}); {self.test_images} images ({self.test_defects} defective) test them.")
        return " ".join((found, anomaly, self._supervised_text()))

    def _labels_phrase(self) -> str:
        return "YOLO labels, drawn as masks" if self.label_source == "YOLO labels" else "masks"

    def _supervised_text(self) -> str:
        if self.supervised_ready and self.from_test:
            return (f"Supervised detectors (U-Net, YOLO): all labelled defects are in the test split, so "
                    f"{self.from_test} of them are set aside for them: {self.supervised_train} to train on (with the "
                    f"{self.normal_train} good images), {self.supervised_val} for validation; they are tested on the "
                    f"other {self.test_labelled} defects and the good test images, so their numbers are not the "
                    "anomaly detectors' (`iadbe benchmark --protocol kfold` scores both kinds on the same images).")
        if self.supervised_ready:
            return (f"Supervised detectors (U-Net, YOLO) can use {self.supervised_train} labelled defects for "
                    f"training (with the {self.normal_train} good images); {self.supervised_val} stay for "
                    f"validation and {self.test_labelled} for the test.")
        if self.test_labelled:
            return (f"Supervised detectors (U-Net, YOLO) are not offered: only {self.test_labelled} labelled "
                    "defects, all in the test split, too few to set some aside to train on. Put some outside it "
                    "(e.g. in the train split of a YOLO export, with their label files), or compare both kinds "
                    "with `iadbe benchmark --protocol kfold`, which trains on folds of them.")
        return ("Supervised detectors (U-Net, YOLO) are not offered: they train on labelled defects (images with "
                "masks, or YOLO labels), and this dataset has none.")


def summarize_labels(splits: DatasetSplits, seed: int = 0) -> LabelSummary:
    """Count what ``splits`` (from :func:`iadbe.data.load_dataset`) offers anomaly and supervised detectors;
    ``seed`` as given to ``train`` (it picks the labelled defects a supervised detector trains on)."""
    real = [s for part in splits.splits.values() for s in part if s.defect_type != SYNTHETIC_TYPE]
    defects = [s for s in real if s.is_anomalous]
    val_real = [s for s in splits.val if s.defect_type != SYNTHETIC_TYPE]
    supervised = supervised_splits(splits, seed)
    return LabelSummary(
        good=len(real) - len(defects), defects=len(defects), labelled=len(labelled_defects(defects)),
        label_source="YOLO labels" if splits.layout == "yolo" else "masks",
        normal_train=sum(not s.is_anomalous for s in splits.train),
        val_images=len(val_real), val_defects=sum(s.is_anomalous for s in val_real),
        synthetic=len(splits.val) - len(val_real),
        test_images=len(splits.test), test_defects=sum(s.is_anomalous for s in splits.test),
        supervised_train=len(labelled_defects(supervised.train)),
        supervised_val=len(labelled_defects(supervised.val)),
        test_labelled=len(labelled_defects(supervised.test)),
        from_test=len(labelled_defects(splits.test)) - len(labelled_defects(supervised.test)),
        defect_share=splits.defect_share,
    )
