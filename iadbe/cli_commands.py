"""The ``iadbe`` commands around the pipeline: the catalogue (``models``, ``backbones``), ``convert``, publishing
(``push``, ``zoo``), ``benchmark`` and ``serve``. :mod:`iadbe.cli` builds the parser and runs them.

Heavy libraries are imported inside each command, so ``iadbe --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns} if rows else {}
    print("  ".join(c.ljust(widths.get(c, len(c))) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def cmd_models(args: argparse.Namespace) -> int:
    if args.download:
        from iadbe import hub
        from iadbe.catalog import find_manifest_entry
        from iadbe.errors import ModelUnavailableError

        entry = find_manifest_entry(args.download)
        if entry is None:
            raise ModelUnavailableError(f"{args.download}: not in the manifest; `iadbe models` lists the ids")
        print(f"downloaded and verified {args.download} into {hub.download_model(entry)}")
        return 0
    if args.all:
        from iadbe.models import get_spec, list_models

        rows = []
        for row in list_models():
            spec = get_spec(row.model)
            rows.append({"model": spec.display_name, "family": spec.family, "in study": "yes" if spec.in_study else "no",
                         "runs here": "yes" if row.runs_here else "no", "backbone": row.backbone or "-",
                         "note": row.reason})
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print_table(rows, ["model", "family", "in study", "runs here", "backbone", "note"])
        return 0
    from iadbe.catalog import build_catalog

    entries = build_catalog()
    if args.json:
        print(json.dumps([entry.__dict__ for entry in entries], indent=2, default=str))
        return 0
    if not entries:
        print("no models yet: train one with `iadbe train ...` or add entries to the manifest")
        return 0
    rows = [{"id": e.id, "model": e.display_name, "dataset": f"{e.dataset or '-'}/{e.category or '-'}",
             "backbone": e.backbone or "-", "source": e.source,
             "cached": "yes" if e.cached else "no",
             "image AUROC": f"{100 * e.metrics['image_AUROC']:.1f}" if "image_AUROC" in e.metrics else "-",
             "pixel AUROC": f"{100 * e.metrics['pixel_AUROC']:.1f}" if "pixel_AUROC" in e.metrics else "-",
             "location": e.location} for e in entries]
    print_table(rows, list(rows[0]))
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    del args
    from iadbe.backbones import ensure_offline_backbones, format_backbone_table, list_backbones

    ensure_offline_backbones()
    print(format_backbone_table(list_backbones()))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from iadbe.hub import push_model

    result = push_model(Path(args.model_dir), args.repo_id, private=args.private, path_in_repo=args.path_in_repo,
                        manifest_path=Path(args.manifest) if args.manifest else None)
    print(f"pushed {len(result.files)} files to {result.url} at revision {result.revision}")
    return 0


def _executor(args: argparse.Namespace) -> Any:
    from iadbe.benchmark.executors import make_executor

    return make_executor(args.executor, address=args.address, cpus_per_job=args.cpus_per_job,
                         gpus_per_job=args.gpus_per_job)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from iadbe.benchmark import RESULTS_DIR, aggregate, compare_with_study, format_comparison, load_records
    from iadbe.benchmark import run_benchmark
    from iadbe.benchmark.report import mean_rows
    from iadbe.benchmark.runs import split_names
    from iadbe.errors import SettingsError

    if not args.dataset:
        raise SettingsError("--dataset is required")
    out = Path(args.out) if args.out else RESULTS_DIR / args.dataset
    mode = "kfold" if getattr(args, "protocol", "split") == "kfold" else args.mode
    if args.models:
        if not args.root:
            raise SettingsError("--root is required to run models")
        categories = None if args.categories in (None, "all") else split_names(args.categories)
        try:
            seeds = [int(seed) for seed in split_names(args.seeds)]
        except ValueError:
            raise SettingsError(f"--seeds must be integers, got {args.seeds!r}") from None
        result = run_benchmark(
            split_names(args.models), args.dataset, args.root, categories, seeds=seeds, backbone=args.backbone,
            image_size=args.image_size, max_epochs=args.max_epochs, max_train_images=args.max_train_images,
            max_train_minutes=args.max_train_minutes, mode=mode, folds=args.folds,
            timing_images=args.timing_images, out=out, timeout_s=args.timeout,
            progress=lambda f, m: print(m, flush=True), executor=_executor(args))
        print(result.summary())
        if "md" in result.files:
            print(result.files["md"].read_text(encoding="utf-8"))
    elif not args.compare_study:
        raise SettingsError("name --models to run, or --compare-study to compare stored results")
    if args.compare_study and mode == "kfold":
        from iadbe.benchmark.kfold_report import kfold_markdown

        records = load_records(out)
        if not any(r.get("mode") == "kfold" for r in records):
            raise SettingsError(f"no finished k-fold runs in {out}; run the benchmark with --protocol kfold first")
        text = kfold_markdown(aggregate(records), records, compare_study=True)
        (out / "kfold_vs_study.md").write_text(text + "\n", encoding="utf-8")
        print(text)
    elif args.compare_study:
        flat = mean_rows(aggregate(load_records(out)))
        if not flat:
            raise SettingsError(f"no finished runs in {out}; run the benchmark first")
        print(format_comparison(compare_with_study(flat, args.dataset), args.dataset))
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from iadbe.benchmark.runs import split_names
    from iadbe.zoo import build_zoo, format_zoo_report

    items = build_zoo(
        dataset=args.dataset, root=args.root, models=split_names(args.models),
        categories=split_names(args.categories) if args.categories else None, repo_id=args.repo_id,
        backbone=args.backbone, image_size=args.image_size, max_epochs=args.max_epochs,
        max_train_images=args.max_train_images, seed=args.seed, manifest_path=args.manifest,
        work_dir=args.work_dir, private=args.private, progress=lambda message: print(message, flush=True),
        executor=_executor(args),
    )
    print(format_zoo_report(items))
    return 1 if any(item.status == "failed" for item in items) else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from iadbe.data.convert import convert_dataset

    result = convert_dataset(args.src, args.dst, args.to, category=args.category, overwrite=args.overwrite)
    print(result.report())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from iadbe.app import launch

    launch(host=args.host, port=args.port)
    return 0
