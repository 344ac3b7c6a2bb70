"""DFKDE's hooks: a batch-dynamic inference forward, the check that it was fitted, its training minimum.

anomalib's ``KDEClassifier.fit`` silently fits nothing when it gets fewer feature vectors (one per
training image) than ``n_pca_components``; its Gaussian KDE then needs one image more than that.
"""

from __future__ import annotations

from typing import Any, Callable


def dfkde_forward(model: Any, images: Any) -> Any:
    """anomalib ``DfkdeModel.forward`` in eval mode, batch-dynamic (image score only, no map)."""
    import torch
    from anomalib.data import InferenceBatch
    from anomalib.models.components.classification import FeatureScalingMethod
    from torch.nn import functional as F

    classifier = model.classifier
    layer_outputs = model.feature_extractor(images)
    pooled = [F.adaptive_avg_pool2d(input=output, output_size=(1, 1)).flatten(1) for output in layer_outputs.values()]
    features = torch.cat(pooled)  # anomalib concatenates along dim 0 (one layer in practice)
    features = (features - classifier.pca_model.mean) @ classifier.pca_model.singular_vectors
    if classifier.feature_scaling_method == FeatureScalingMethod.NORM:
        features = features / torch.linalg.norm(features, ord=2, dim=1)[:, None]
    elif classifier.feature_scaling_method == FeatureScalingMethod.SCALE:
        features = features / classifier.max_length
    else:
        raise RuntimeError("Unknown pre-processing mode. Available modes are: Normalized and Scale.")
    kde = classifier.kde_model
    features = features @ kde.bw_transform
    distances = ((kde.dataset.unsqueeze(0) - features.unsqueeze(1)) ** 2).sum(dim=2)  # (B, M)
    estimate = (torch.exp(-distances / 2) * kde.norm).mean(dim=1)
    estimate = estimate + 1e-300  # as anomalib (a no-op in float32)
    return InferenceBatch(pred_score=classifier.compute_probabilities(torch.log(estimate)))


def check_dfkde_fitted(model: Any) -> None:
    """Refuse an unfitted DFKDE with the reason (anomalib would fail later with a shape error)."""
    from iadbe.errors import SettingsError

    classifier = model.classifier
    if classifier.pca_model.mean.numel() == 0 or classifier.kde_model.dataset.numel() == 0:
        components = classifier.n_pca_components
        raise SettingsError(
            "DFKDE was not fitted: anomalib's KDEClassifier.fit silently skips fitting when it gets fewer "
            f"feature vectors (one per training image) than n_pca_components ({components}), and its "
            f"Gaussian KDE over {components} PCA components needs at least {components + 1} training images "
            "(fewer make the covariance singular); train on more images or lower n_pca_components"
        )


def graph(model: Any, image_size: tuple[int, int] | None = None) -> Callable[[Any], Any]:
    """The ``graph`` hook: refuse an unfitted model, then :func:`dfkde_forward`."""
    del image_size
    check_dfkde_fitted(model)
    return lambda images: dfkde_forward(model, images)


def min_train_images(init_args: dict[str, Any]) -> int:
    """The ``min_train_images`` hook: the PCA's rank plus one, else the KDE fit fails."""
    return int(init_args.get("n_pca_components", 16)) + 1
