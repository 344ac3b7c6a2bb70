"""Where do a stored model's anomaly maps peak on tire's test set? Pooled vs per-image pixel AUROC."""
import sys
import numpy as np
from iadbe.data import load_dataset
from iadbe.inference import load_model
from iadbe.evaluation import run_backend
from iadbe.metrics import evaluate

model = load_model(sys.argv[1], "torch")
splits = load_dataset("mvtec3d", "/work/shared/data/mvtec_3d", "tire")
out = run_backend(model.backend, splits.test, model.config.image_size)

def auroc(scores, labels):
    from sklearn.metrics import roc_auc_score
    return roc_auc_score(labels, scores)

maps, masks = out.maps, out.masks
print("pooled pixel AUROC", auroc(maps.ravel(), masks.ravel()))
z = (maps - maps.mean(axis=(1, 2), keepdims=True)) / (maps.std(axis=(1, 2), keepdims=True) + 1e-12)
print("per-image standardised pixel AUROC", auroc(z.ravel(), masks.ravel()))
bad = out.labels == 1
print("pixel AUROC within each defective image (mean)", np.mean([auroc(m.ravel(), k.ravel()) for m, k in zip(maps[bad], masks[bad]) if k.any()]))
h, w = maps.shape[1:]
peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
border = np.mean([min(r, c, h - 1 - r, w - 1 - c) < h // 16 for r, c in peaks])
print("share of maps peaking within 1/16 of the border", border)
mean_map = maps.mean(0)
print("mean map: border ring mean", np.r_[mean_map[:8].ravel(), mean_map[-8:].ravel()].mean(), "centre mean", mean_map[h//4:3*h//4, w//4:3*w//4].mean())
print("image AUROC", auroc(out.scores, out.labels))
