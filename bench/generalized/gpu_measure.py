"""Device run: train the four generalised models on tire in parallel processes on one GPU.

Each process trains with the study's epochs, stopped by Lightning's max_time; the epochs actually
completed are recorded. Evaluation (validation calibration + whole test set) is IADBE's own (CPU).
"""
import json, os, sys, time
from pathlib import Path

model, epochs, minutes, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
import torch
torch.set_num_threads(3)
import lightning.pytorch as pl

completed = {}
original_init, original_fit = pl.Trainer.__init__, pl.Trainer.fit

def init(self, *args, **kwargs):
    kwargs["max_time"] = {"seconds": int(minutes * 60)}
    original_init(self, *args, **kwargs)

def fit(self, *args, **kwargs):
    started = time.perf_counter()
    result = original_fit(self, *args, **kwargs)
    completed["epochs"] = self.current_epoch
    completed["fit_s"] = time.perf_counter() - started
    return result

pl.Trainer.__init__, pl.Trainer.fit = init, fit
from iadbe.training import train

started = time.perf_counter()
result = train(model, "mvtec3d", ".gpu_a/mvtec_3d", category="tire", backbone="tf_efficientnet_lite0", image_size=256,
               max_epochs=epochs, out=Path(f"/tmp/models/{model}"), overwrite=True, seed=0, export=False)
row = {"model": model, "max_epochs": epochs, "epochs_completed": completed.get("epochs"), "metrics": result.metrics,
       "training_time_s": result.training_time_s, "total_s": time.perf_counter() - started,
       "implementation": result.meta["detector"]["extra"].get("implementation"), "device": torch.cuda.get_device_name(0),
       "train_images": result.meta["train_images"], "test": result.meta["test_counts"]}
(out / f"{model}.json").write_text(json.dumps(row, indent=1))
print(json.dumps(row))
