"""``iadbe`` command line: a thin layer over the library. The pipeline's commands (train, test, predict,
export) are here, the others in :mod:`iadbe.cli_commands`.

Heavy libraries are imported inside each command, so ``iadbe --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from iadbe import __version__
from iadbe.cli_args import image_size_arg, parse_settings
from iadbe.constants import BACKENDS, PRECISIONS
from iadbe.cli_commands import (
    cmd_backbones,
    cmd_benchmark,
    cmd_convert,
    cmd_models,
    cmd_push,
    cmd_serve,
    cmd_zoo,
    print_table,
)
from iadbe.data.kinds import KINDS


def _add_dataset_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--dataset", choices=KINDS, required=required, help="dataset kind")
    parser.add_argument("--root", required=required, help="dataset root folder (or .zip / hf://datasets/... for folder)")
    parser.add_argument("--category", help="category (e.g. bottle, tire); not needed for folder/kolektor")


def _add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="inference precision (default auto, or $IADBE_OV_PRECISION): auto runs the fastest "
                             "precision the model's export check kept (no validation label flipped, scores within "
                             "0.02) where this machine runs it natively, else f32; f32 gives torch's numbers")


def _add_executor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: each job in turn on this machine; ray: each job as a Ray task (pip install ray)")
    parser.add_argument("--address", help="Ray cluster (HOST:6379, ray://HOST:10001, or 'local' for a new one here; "
                                          "default: RAY_ADDRESS or a `ray start` cluster here, else a new one)")
    parser.add_argument("--cpus-per-job", type=float, help="Ray: CPUs per job (default: the detector's entry, 2)")
    parser.add_argument("--gpus-per-job", type=float,
                        help="Ray: GPU share per job, e.g. 0.25 or 1 (default: 1 for trained detectors, 0.25 for "
                             "one-pass fits, 0 on a cluster without GPUs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iadbe", description="Industrial Anomaly Detection Benchmark Engine")
    parser.add_argument("--version", action="version", version=f"iadbe {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train, evaluate and store a model (weights, config, OpenVINO)")
    p.add_argument("--model", required=True, help="detector name, see `iadbe models --all`")
    _add_dataset_args(p)
    p.add_argument("--backbone", help="timm backbone (default: the model's, tf_efficientnet_lite0 offline)")
    p.add_argument("--image-size", type=image_size_arg, default=256,
                   help="model input size: 256, or HxW such as 384x288 (height x width)")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-train-images", type=int, help="train on a seeded subset (quick runs)")
    p.add_argument("--max-train-minutes", type=float,
                   help="stop training after this many minutes (the epochs done are recorded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="model directory to write (default: the local model store)")
    p.add_argument("--name", help="model name (default: model-backbone-dataset-category-time)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-export", action="store_true", help="skip the OpenVINO export")
    p.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE",
                   help="a detector setting (an init argument, e.g. coreset_sampling_ratio=0.04 or "
                        "'layers=[\"blocks.2\", \"blocks.4\"]'); VALUE is read as JSON where it parses, else as text; "
                        "repeatable")
    p.add_argument("--dtd-dir", help="DRAEM only: folder of texture images for its simulated anomalies "
                                     "(e.g. DTD's images/); default: Perlin noise only")
    _add_rate_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="re-evaluate a stored model on a dataset's whole test set")
    p.add_argument("--model-dir", "--model", dest="model", required=True, help="model directory or reference")
    _add_dataset_args(p)
    _add_backend_args(p)
    _add_rate_args(p, moves=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("predict", help="predict images and videos; writes overlays/, binary masks (0/255) in "
                                       "masks/, predictions.csv (each file's path as given, and the files written "
                                       "for it) and predictions.zip, as the app's Batch tab does; per video a folder "
                                       "with annotated.mp4 (H.264), scores.csv, timeline.png and the flagged frames")
    p.add_argument("--model", required=True, help="model directory, store name, manifest id or hf:// reference")
    p.add_argument("inputs", nargs="+", help="image files or folders, video files (.mp4, .avi, .mov, .mkv, .webm...)")
    _add_backend_args(p)
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold on the normalised score")
    p.add_argument("--false-alarm-rate", type=float, metavar="RATE",
                   help="share of good parts that may be flagged, e.g. 0.01 (default: the model's calibrated rate); "
                        "moves the point that --threshold 0.5 stands for")
    p.add_argument("--opacity", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", help="output folder (default: ./predictions)")
    p.add_argument("--no-zip", action="store_true", help="do not write predictions.zip")
    p.add_argument("--trust-local-pickle", action="store_true",
                   help="load pickled weights (weights.pt) of a LOCAL model directory; unpickling can run code "
                        "from the file, so only for files you made or trust")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="(re-)export a stored model to OpenVINO")
    p.add_argument("--model-dir", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list the catalogue (manifest + local store), or every detector")
    p.add_argument("--all", action="store_true", help="list every detector of the study and whether it runs here")
    p.add_argument("--download", metavar="ID", help="download (and verify) a manifest model into the cache")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("backbones", help="list backbones and whether their weights are available here")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("push", help="publish a model directory to the Hugging Face Hub (one commit)")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--private", action="store_true")
    p.add_argument("--path-in-repo", default="")
    p.add_argument("--manifest", help="manifest file to add/update the entry in")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("benchmark", help="models x categories x seeds, each run in its own process; resumable")
    p.add_argument("--models", help="comma-separated detector names, e.g. padim,patchcore")
    _add_dataset_args(p, required=False)
    p.add_argument("--categories", help="comma-separated categories, or 'all' (default: all found under --root)")
    p.add_argument("--backbone")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (tables show mean ± std)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--max-train-images", type=int, help="train on a seeded subset (quick runs)")
    p.add_argument("--max-train-minutes", type=float,
                   help="stop training after this many minutes (the epochs done are recorded)")
    p.add_argument("--mode", choices=("per_category", "one_to_all", "unified"), default="per_category",
                   help="one_to_all: train on each category, test on all (the study's unified table); "
                        "unified: one model trained on all categories together")
    p.add_argument("--protocol", choices=("split", "kfold"), default="split",
                   help="kfold: supervised and anomaly detectors compared fairly over --folds folds of the labelled "
                        "images (every defect tested by models that never saw it)")
    p.add_argument("--folds", type=int, default=3, help="folds of --protocol kfold (default 3)")
    p.add_argument("--timing-images", type=int, default=8, help="test images timed per backend (median ms)")
    p.add_argument("--out", help="output folder (default: IADBE_HOME/benchmark/<dataset>); re-run to resume")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds before one run is stopped")
    p.add_argument("--compare-study", action="store_true",
                   help="print our numbers next to the IADBE study's (runs nothing new without --models)")
    _add_executor_args(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("zoo", help="maintainers: train every model on every category, push each, write the manifest")
    _add_dataset_args(p)
    p.add_argument("--models", required=True, help="comma-separated detector names, e.g. padim,patchcore")
    p.add_argument("--categories", help="comma-separated categories (default: all found under --root)")
    p.add_argument("--repo-id", required=True, help="Hub repository OWNER/NAME (models go to <model>/<category>)")
    p.add_argument("--backbone")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--max-train-images", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--manifest", help="manifest to update (default: the shipped iadbe/models_manifest.yaml)")
    p.add_argument("--work-dir", help="where trained models wait for their push (default: IADBE_HOME/zoo)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    _add_executor_args(p)
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("convert", help="write a dataset (any layout IADBE reads) out as a YOLO export or in MVTec AD's "
                                       "layout (masks <-> boxes)")
    p.add_argument("src", help="dataset folder or .zip")
    p.add_argument("dst", help="new output folder")
    p.add_argument("--to", required=True, choices=("yolo", "mvtec"))
    p.add_argument("--category", help="category sub-folder, where SRC holds several")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("serve", help="start the Gradio app")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.command:
        parser.print_help()
        return 0
    _quiet_libraries(args.verbose)
    from iadbe.errors import IADBEError

    try:
        return int(args.func(args) or 0)
    except IADBEError as error:
        _end_progress_line()
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _quiet_libraries(verbose: bool) -> None:
    import warnings

    if not verbose:
        warnings.filterwarnings("ignore")
        for name in ("lightning", "lightning.pytorch", "anomalib", "timm", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)


_PROGRESS_LINE_OPEN = [False]  # a progress line ended with "\r": an error message must start a new line


def _end_progress_line() -> None:
    if _PROGRESS_LINE_OPEN[0]:
        print(file=sys.stderr)
        _PROGRESS_LINE_OPEN[0] = False


def _progress_printer() -> Callable[[float, str], None]:
    last = {"text": ""}

    def show(fraction: float, message: str) -> None:
        text = f"[{100 * fraction:5.1f}%] {message}"
        if text != last["text"]:
            last["text"] = text
            end = "\n" if fraction >= 1.0 else "\r"
            print(f"\r{text:<78}", end=end, file=sys.stderr, flush=True)
            _PROGRESS_LINE_OPEN[0] = end == "\r"

    return show


def _add_rate_args(p: argparse.ArgumentParser, moves: bool = False) -> None:
    from iadbe.calibration import DEFAULT_FALSE_ALARM_RATE, DEFAULT_PIXEL_FALSE_ALARM_RATE

    default = "the model's calibrated rate" if moves else (
        f"{DEFAULT_FALSE_ALARM_RATE:g}, or the best expected F1 on labelled defects outside the test split")
    p.add_argument("--false-alarm-rate", type=float, metavar="RATE",
                   help=f"share of good parts the image threshold may flag, e.g. 0.01 = 1 %% (default: {default})")
    default = "the model's calibrated rate" if moves else f"{DEFAULT_PIXEL_FALSE_ALARM_RATE:g}"
    p.add_argument("--pixel-false-alarm-rate", type=float, metavar="RATE",
                   help=f"share of good pixels the mask threshold may mark (default: {default})")


def cmd_train(args: argparse.Namespace) -> int:
    from iadbe.store import check_writable
    from iadbe.training import train

    check_writable(Path(args.out).expanduser().absolute().parent if args.out else None)  # before a long run
    settings = parse_settings(args.settings)
    if args.dtd_dir:  # a detector without this setting refuses it (resolve_config) before any data is read
        settings["dtd_dir"] = args.dtd_dir
    result = train(
        args.model, args.dataset, args.root, category=args.category, backbone=args.backbone,
        image_size=args.image_size, max_epochs=args.max_epochs, seed=args.seed, out=args.out, name=args.name,
        overwrite=args.overwrite, max_train_images=args.max_train_images, max_train_minutes=args.max_train_minutes,
        batch_size=args.batch_size,
        export=not args.no_export, progress=_progress_printer(),
        overrides=settings or None, false_alarm_rate=args.false_alarm_rate,
        pixel_false_alarm_rate=args.pixel_false_alarm_rate,
    )
    if args.json:
        print(json.dumps({"model_dir": str(result.model_dir), "metrics": result.metrics,
                          "training_time_s": result.training_time_s}, indent=2))
        return 0
    print(result.dataset_report)
    print()
    print(result.metrics_table())
    if not args.no_export:
        from iadbe.precision import describe

        print(describe(result.meta.get("precision")))
    print(f"\ntraining time {result.training_time_s:.1f} s; model written to {result.model_dir}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from iadbe.evaluation import evaluate_model_dir, format_metrics

    evaluation = evaluate_model_dir(args.model, args.dataset, args.root, args.category, args.backend,
                                    progress=_progress_printer(), false_alarm_rate=args.false_alarm_rate,
                                    pixel_false_alarm_rate=args.pixel_false_alarm_rate, precision=args.precision)
    if args.json:
        print(json.dumps({**evaluation.metrics, "backend": evaluation.backend, "precision": evaluation.precision},
                         indent=2))
    else:
        print(evaluation.report, f"on {evaluation.backend} at {evaluation.precision}", "",
              format_metrics(evaluation.metrics), sep="\n")
    return 0


def _expand_inputs(inputs: Sequence[str]) -> list[Path]:
    from iadbe.data.files import IMAGE_EXTENSIONS
    from iadbe.errors import ImageError

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise ImageError(f"{item}: no such file or folder")
    if not files:
        raise ImageError("no images found in the given inputs")
    return files


def cmd_predict(args: argparse.Namespace) -> int:
    from iadbe.inference import load_model
    from iadbe.inference.batch import predict_to_files

    from iadbe.video import is_video

    model = load_model(args.model, backend=args.backend, trust_local_pickle=args.trust_local_pickle,
                       precision=args.precision)
    videos = [Path(item) for item in args.inputs if is_video(item) and not Path(item).is_dir()]
    out = Path(args.out or "predictions")
    for video in videos:
        _predict_video(model, video, out / _free_name(out, video.stem), args)
    images = [item for item in args.inputs if Path(item) not in videos]
    if not images:
        return 0
    files = _expand_inputs(images)
    # each file is named by its path as given: two 000.png from different folders stay apart
    result = predict_to_files(model, files, out, threshold=args.threshold, opacity=args.opacity,
                              false_alarm_rate=args.false_alarm_rate, batch_size=args.batch_size,
                              archive=not args.no_zip)
    for row in result.failures:
        print(f"skipped: {row['error']}", file=sys.stderr)
    print_table([row for row in result.rows if not row["error"]], ["file", "score", "label", "backend", "ms"])
    print(f"\n{len(result.predictions)} images on {model.backend_name} ({model.device}); "
          f"{result.anomalous} anomalous; outputs in {out}")
    return 1 if result.failures and not result.predictions else 0


def _predict_video(model: Any, video: Path, folder: Path, args: argparse.Namespace) -> None:
    """One video: annotated.mp4, scores.csv, timeline.png and flagged/ in ``folder`` (``iadbe.video``)."""
    from iadbe.video import predict_video

    result = predict_video(model, video, folder, threshold=args.threshold, false_alarm_rate=args.false_alarm_rate,
                           opacity=args.opacity, batch_size=args.batch_size, progress=_progress_printer())
    print(f"{video}: {result.frames} frames, {result.anomalous} anomalous, {result.frames_per_s:.1f} frames/s "
          f"on {model.backend_name}; outputs in {folder}")
    for note in result.notes:
        print(f"  note: {note}")


def _free_name(out: Path, stem: str) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... when ``out/stem`` exists (two clip.mp4 from different folders)."""
    name, number = stem, 1
    while (out / name).exists():
        number += 1
        name = f"{stem}_{number}"
    return name


def cmd_export(args: argparse.Namespace) -> int:
    from iadbe.export import export_model_dir

    from iadbe.precision import describe_model

    xml = export_model_dir(Path(args.model_dir))
    print(f"exported {xml}\n{describe_model(Path(args.model_dir))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
