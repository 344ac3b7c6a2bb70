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
