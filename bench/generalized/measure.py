"""Train one generalised model on MVTec 3D-AD tire and print/save the metrics (IADBE_HOME is a temp dir)."""
import json, sys, time, logging
from pathlib import Path

model, epochs = sys.argv[1], int(sys.argv[2])
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
from iadbe.training import train

started = time.perf_counter()
result = train(model, "mvtec3d", "/work/shared/data/mvtec_3d", category="tire", backbone="tf_efficientnet_lite0",
               image_size=256, max_epochs=epochs, out=Path(f"/tmp/gen_a/models/{model}-{epochs}ep"), overwrite=True,
               seed=0, **extra)
total = time.perf_counter() - started
row = {"model": model, "epochs": epochs, "extra": extra, "metrics": result.metrics,
       "training_time_s": result.training_time_s, "total_s": total,
       "implementation": result.meta["detector"]["extra"].get("implementation"),
       "train_images": result.meta["train_images"], "test": result.meta["test_counts"]}
print(json.dumps(row, indent=1))
with open("/tmp/gen_a/results.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
