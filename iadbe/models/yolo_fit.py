"""Training a YOLO detector (the ``fit`` hook of the YOLO entries), in a subprocess, offline.

The parent (:func:`fit`) writes the training images at the model's input size (stretched, as inference feeds
them; YOLO's normalised labels do not change under a stretch) with one box per connected region of each
defect's mask (:func:`iadbe.data.convert.sample_boxes`) and an empty label file for each normal image. It hands
the child the network's initial state (built in the parent from the run's seed) and reads back the trained
state as safetensors. The child (``python -m iadbe.models.yolo_fit JOB.json``) runs Ultralytics'
``DetectionTrainer`` with IADBE's offline environment (:func:`iadbe.constants.yolo_subprocess_env`): plots
(fonts), AMP (its check downloads a model), checkpoints' validation passes and Ultralytics' dataset check (a
font download) are off; validation and thresholds are IADBE's own afterwards, like every detector's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

PROGRESS_TAG = "IADBE-YOLO-PROGRESS"
#: Share of the training's progress bar reached when the child starts training (images written, model built).
_PREPARED = 0.05


def fit(request: Any) -> Any:
    """The ``fit`` hook (:class:`~iadbe.models.fit_request.FitRequest`): train ``request.module.model`` on
    ``request.train`` (normal and defective images, with masks); returns the trained ``DetectionModel``."""
    from iadbe import constants, store
    from iadbe.errors import SettingsError, TrainingError
    from iadbe.models.yolo import require_ultralytics

    require_ultralytics()
    module, samples, config, progress = request.module, request.train, request.config, request.progress
    batch_size, max_minutes, seed = request.batch_size, request.max_minutes, request.seed
    if not any(sample.is_anomalous for sample in samples):
        raise SettingsError("a YOLO detector learns from labelled defects, and the training images hold none")
    with tempfile.TemporaryDirectory(prefix="iadbe-yolo-", dir=_scratch(constants.IADBE_HOME)) as folder:
        work = Path(folder)
        notes = write_training_images(samples, config.image_size, work / "data")
        store.save_weights(module.model.state_dict(), work / "init.safetensors")
        job = {
            "model_yaml": config.init_args["model_yaml"], "names": list(config.init_args["names"]),
            "data": str(work / "data"), "init": str(work / "init.safetensors"), "out": str(work / "out.safetensors"),
            "weights": _local_weights(config.extra.get("weights")), "epochs": int(config.max_epochs),
            "imgsz": int(max(config.image_size)), "batch": int(max(2, min(batch_size, len(samples)))),
            "seed": int(seed), "hours": max_minutes / 60 if max_minutes else None, "device": _device(),
            "project": str(work / "runs"),
        }
        (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
        progress(_PREPARED, f"training {config.init_args['model_yaml']} on {len(samples)} images"
                 + (f" ({'; '.join(notes[:2])})" if notes else ""))
        result = _run_child(work, progress, constants.yolo_subprocess_env(work / "ultralytics"))
        state = store.load_weights(Path(job["out"]))
    missing = sorted(set(module.model.state_dict()) ^ set(state))
    if missing:
        raise TrainingError(f"the trained YOLO weights do not fit the model ({missing[:3]})")
    module.model.load_state_dict(state)
    request.record["epochs_trained"] = float(result.get("epochs", config.max_epochs))
    request.record["ultralytics_seconds"] = result.get("seconds")
    request.record["stopped_by_time_cap"] = bool(result.get("stopped_by_time_cap"))
    return module.model.eval()


def _scratch(home: Path) -> Path:
    folder = home / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _device() -> str:
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def _local_weights(weights: str | None) -> str | None:
    """The starting weights as a local file (an ``hf://`` one downloaded through :mod:`iadbe.hub`)."""
    if not weights:
        return None
    if str(weights).startswith("hf://"):
        from iadbe.hub import download_file

        return str(download_file(str(weights)))
    return str(Path(weights).expanduser().resolve())


def write_training_images(samples: Sequence[Any], size: tuple[int, int], out: Path) -> list[str]:
    """``out/images/train/*.png`` at ``size`` (H, W) and ``out/labels/train/*.txt``; returns notes."""
    import cv2

    from iadbe.data.convert import sample_boxes
    from iadbe.images import load_image, resize_rgb

    notes: list[str] = []
    (out / "images" / "train").mkdir(parents=True)
    (out / "labels" / "train").mkdir(parents=True)
    for index, sample in enumerate(samples):
        rgb = resize_rgb(load_image(sample.image), tuple(size))
        cv2.imwrite(str(out / "images" / "train" / f"{index:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        boxes, note = sample_boxes(sample)
        if note:
            notes.append(note)
        lines = "".join(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for cx, cy, w, h in boxes)
        (out / "labels" / "train" / f"{index:05d}.txt").write_text(lines, encoding="utf-8")
    return notes


def _run_child(work: Path, progress: Callable[[float, str], None], env: dict[str, str]) -> dict[str, Any]:
    """Run the child, relaying its epochs to ``progress``; its output goes to ``work/log.txt``."""
    from iadbe.errors import TrainingError

    log_path = work / "log.txt"
    command = [sys.executable, "-m", "iadbe.models.yolo_fit", str(work / "job.json")]
    with log_path.open("w", encoding="utf-8") as log:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=work)
        try:
            for line in child.stdout or ():
                log.write(line)
                if line.startswith(PROGRESS_TAG):
                    done, total = (int(v) for v in line.split()[1:3])
                    progress(_PREPARED + (1 - _PREPARED) * done / max(1, total), f"epoch {done}/{total}")
        except BaseException:  # a cancel raised by ``progress`` (the app's Stop button): the child stops too
            child.kill()
            child.wait()
            raise
        code = child.wait()
    result_path = work / "result.json"
    if code != 0 or not result_path.is_file():
        tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise TrainingError(f"YOLO training failed (exit code {code}):\n{tail}")
    return json.loads(result_path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the child process
def _transfer(model: Any, path: str) -> int:
    """Copy the tensors of a user's weights file whose names and shapes fit; returns how many."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:  # the user's own Ultralytics checkpoint (a pickle: never a download, see yolo.check_iadbe_settings)
        from ultralytics.nn.tasks import load_checkpoint

        loaded, _ = load_checkpoint(path)
        state = loaded.float().state_dict()
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    with torch.no_grad():
        model.load_state_dict(fitting, strict=False)
    return len(fitting)


def _keep_epochs(trainer: Any, epochs: int) -> None:
    """With a time cap (``time``) Ultralytics re-plans the epochs to fill it; IADBE's cap only stops early."""
    if trainer.epochs > epochs:
        trainer.epochs = trainer.args.epochs = epochs
    trainer.stop |= trainer.epoch + 1 >= epochs


def child_main(job_path: str) -> None:
    from safetensors.torch import load_file, save_file
    from ultralytics.models.yolo.detect import DetectionTrainer

    from iadbe.models.yolo import YoloDetector

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    names = dict(enumerate(job["names"]))
    model = YoloDetector(job["model_yaml"], job["names"]).model  # built as the parent builds it
    model.load_state_dict(load_file(job["init"]))
    if job["weights"]:
        print(f"started from {_transfer(model, job['weights'])} tensors of {job['weights']}", file=sys.stderr)
    model.names = names
    images = str(Path(job["data"]) / "images" / "train")
    data = {"path": Path(job["data"]), "train": images, "val": images, "names": names, "nc": len(names),
            "channels": 3}

    class OfflineTrainer(DetectionTrainer):
        def get_dataset(self) -> dict[str, Any]:  # Ultralytics' check would fetch a font
            return data

        def validate(self) -> tuple[dict[str, float], float]:  # IADBE calibrates and evaluates afterwards
            return {}, 0.0

        def final_eval(self) -> None:
            return None

    overrides = {
        "model": job["model_yaml"], "data": str(Path(job["data"]) / "data.yaml"), "epochs": job["epochs"],
        "imgsz": job["imgsz"], "batch": job["batch"], "device": job["device"], "workers": 0, "plots": False,
        "amp": False, "val": False, "save": False, "project": job["project"], "name": "train", "exist_ok": True,
        "seed": job["seed"], "deterministic": True, "patience": job["epochs"] + 1, "verbose": False,
        "pretrained": False, "cache": False, "time": job["hours"],
    }
    trainer = OfflineTrainer(overrides=overrides)
    trainer.model = model
    trainer.add_callback("on_train_epoch_end",
                         lambda t: print(f"{PROGRESS_TAG} {t.epoch + 1} {min(t.epochs, job['epochs'])}", flush=True))
    trainer.add_callback("on_fit_epoch_end", lambda t: _keep_epochs(t, job["epochs"]))
    started = time.perf_counter()
    trainer.train()
    trained = trainer.ema.ema if trainer.ema is not None else trainer.model
    state = {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous().clone()
             for k, v in trained.state_dict().items()}
    save_file(state, job["out"])
    result = {"epochs": trainer.epoch + 1, "seconds": round(time.perf_counter() - started, 3),
              "stopped_by_time_cap": bool(job["hours"]) and trainer.epoch + 1 < job["epochs"]}
    (Path(job_path).parent / "result.json").write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    child_main(sys.argv[1])
