"""Inference forwards that stay correct for any batch size once traced for export.

anomalib 2.7's PatchCore forward loops over chunks with Python ``range`` and ``min`` on the batch
size, so a traced graph bakes in the example batch (its own export came out fixed at batch 2).
The function below computes exactly the same scores (same nearest neighbours, same re-weighting
from the paper) with tensor ops only. Tested against anomalib's forward in tests/test_graphs.py.
"""

from __future__ import annotations

from typing import Any, Callable


def patchcore_forward(model: Any, images: Any) -> Any:
    """anomalib ``PatchcoreModel.forward`` in eval mode, batch-dynamic."""
    import torch
    from anomalib.data import InferenceBatch
    from torch.nn import functional as F

    features = model.feature_extractor(images)
    features = {layer: model.feature_pooler(feature) for layer, feature in features.items()}
    embedding = model.generate_embedding(features)
    batch, channels, height, width = embedding.shape
    flat = embedding.permute(0, 2, 3, 1).reshape(-1, channels)
    memory_bank = model.memory_bank
    patch_scores, locations = model.euclidean_dist(flat, memory_bank).min(1)
    patch_scores = patch_scores.reshape(batch, -1)
    locations = locations.reshape(batch, -1)

    max_patches = patch_scores.argmax(1, keepdim=True)
    score = patch_scores.gather(1, max_patches).squeeze(1)
    if model.num_neighbors == 1:
        pred_score = score
    else:
        per_image = flat.reshape(batch, height * width, channels)
        max_features = per_image.gather(1, max_patches.unsqueeze(-1).expand(-1, 1, channels))  # (B, 1, C)
        nn_index = locations.gather(1, max_patches).squeeze(1)
        neighbours = min(model.num_neighbors, memory_bank.shape[0])
        _, support = model.euclidean_dist(memory_bank[nn_index], memory_bank).topk(neighbours, largest=False, dim=1)
        distances = model.euclidean_dist(max_features, memory_bank[support])  # (B, 1, k)
        weights = (1 - F.softmax(distances.squeeze(1), 1))[..., 0]
        pred_score = weights * score
    anomaly_map = model.anomaly_map_generator(patch_scores.reshape(batch, 1, height, width), images.shape[-2:])
    return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)


#: anomalib torch model class name -> batch-dynamic forward.
GRAPH_FORWARDS: dict[str, Callable[[Any, Any], Any]] = {"PatchcoreModel": patchcore_forward}


def forward_for(model: Any) -> Callable[[Any], Any]:
    """The forward to use in the inference graph for ``model``."""
    special = GRAPH_FORWARDS.get(type(model).__name__)
    if special is None:
        return model
    return lambda images: special(model, images)
