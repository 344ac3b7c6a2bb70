"""Train one generalised model on MVTec 3D-AD tire and print metrics + time (IADBE train())."""
import json, sys, time
from iadbe.training import train
name, backbone, epochs = sys.argv[1], (sys.argv[2] if sys.argv[2] != "none" else None), int(sys.argv[3])
overrides = json.loads(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
limit = int(sys.argv[5]) if len(sys.argv) > 5 else None
started = time.time()
result = train(name, "mvtec3d", "/work/shared/data/mvtec_3d", category="tire", backbone=backbone, image_size=256,
               max_epochs=epochs, out=f"/tmp/gb_runs/{name}-{epochs}", overwrite=True, export=False, seed=0,
               overrides=overrides, max_train_images=limit)
print(json.dumps({"model": name, "backbone": backbone, "epochs": epochs, "overrides": overrides,
                  "metrics": result.metrics, "fit_s": round(result.training_time_s, 1),
                  "wall_s": round(time.time() - started, 1), "train_images": result.meta["train_images"],
                  "extra": result.meta["detector"]["extra"]}, indent=1))
