"""Training batches for anomalib models, decoded and resized exactly as inference does.

Images go through :func:`iadbe.images.load_image` and ``resize_rgb`` so the features a
model is fitted on are the features it sees when deployed; anomalib's pre-processor then only
normalises (its Resize is a no-op at this size).
"""

from __future__ import annotations

from typing import Any, Sequence


def make_train_loader(samples: Sequence[Any], image_size: tuple[int, int], batch_size: int, seed: int = 0) -> Any:
    """A DataLoader of anomalib ``ImageBatch``es over normal ``samples`` (shuffled, seeded)."""
    import torch
    from anomalib.data import ImageBatch, ImageItem
    from torch.utils.data import DataLoader, Dataset

    from iadbe.images import load_image, resize_rgb

    class TrainSet(Dataset):
        def __len__(self) -> int:
            return len(samples)

        def __getitem__(self, index: int) -> Any:
            sample = samples[index]
            rgb = resize_rgb(load_image(sample.image), image_size)
            image = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float().div_(255.0)
            return ImageItem(
                image=image,
                gt_label=torch.tensor(0),
                gt_mask=torch.zeros(image_size, dtype=torch.bool),
                image_path=str(sample.image),
            )

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        TrainSet(), batch_size=min(batch_size, max(1, len(samples))), shuffle=True, generator=generator,
        collate_fn=ImageBatch.collate, num_workers=0, drop_last=False,
    )


def read_mask(sample: Any, image_size: tuple[int, int]) -> Any:
    """Ground truth at the model's size (nearest), all-False for normal images without a mask."""
    import cv2
    import numpy as np
    from PIL import Image

    if not getattr(sample, "mask", None):
        return np.zeros(image_size, dtype=bool)
    with Image.open(sample.mask) as mask:
        array = np.asarray(mask.convert("L"))
    return cv2.resize(array, image_size[::-1], interpolation=cv2.INTER_NEAREST) > 0


def load_labelled(samples: Sequence[Any], image_size: tuple[int, int]) -> tuple[Any, Any]:
    """Images (N x H x W x 3 uint8, read and resized as inference reads them) and their masks (N x H x W
    bool) at the model's size: what a supervised detector trains on."""
    import numpy as np

    from iadbe.images import load_image, resize_rgb

    images = np.stack([resize_rgb(load_image(sample.image), image_size) for sample in samples])
    masks = np.stack([read_mask(sample, image_size) for sample in samples])
    return images, masks
