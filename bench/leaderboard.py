"""The Benchmark tab stays responsive with 1,000 result records: the leaderboard updates in under 1 s after a
filter change (issue 21).

    python bench/leaderboard.py [--records 1000] [--rounds 5] [--no-browser]

Writes ``--records`` synthetic benchmark records (the worker's record format, random metrics; 16 models x the
study's MVTec AD, VisA and MVTec 3D-AD categories x seeds, one benchmark folder per seed and dataset) into the
results folder of a fresh app (``python app.py`` in a subprocess, its own temporary home, one model in its
store so that it builds no demo model), then measures:

* the first ``/leaderboard`` call, which reads every record (the page's opening);
* filter changes (dataset, metric, models, categories in turn) through ``gradio_client``: the same handler
  the filters' ``input`` events call, with Gradio's queue and transport;
* with Chromium and Playwright installed: in a real browser, from choosing another dataset to the table
  showing its columns (what a visitor waits for), first with only the runs shipped in docs/benchmark (the
  same page and plots, about 20 records), then with the 1,000. The wait is measured in the page, from the
  pointer press on the option to the first animation frame that shows the new table; the same wait timed
  from Python around Playwright's click is printed beside it (Playwright checks that the option is
  visible and stable before it presses: ~0.25 s that no visitor waits). The machine's load average is
  printed: on a shared 2-core machine the browser's own rendering dominates.

The in-process handler time (board, table, styling, Gradio's post-processing) is printed too, so the part
the library owns can be told from the transport. Medians over ``--rounds`` rounds of every filter change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _app import start_app  # noqa: E402
from _models import trained_model  # noqa: E402

TARGET_S = 1.0
CHROMIUM = Path("/usr/bin/chromium")
#: (dataset, metric, models, categories): one filter changed at a time, as a visitor does.
CHANGES = [("visa", "image_AUROC", [], []), ("visa", "pixel_AUROC", [], []), ("mvtec", "pixel_AUROC", [], []),
           ("mvtec", "image_AUROC", [], []), ("mvtec", "image_AUROC", ["padim", "patchcore"], []),
           ("mvtec", "image_AUROC", ["padim", "patchcore"], ["screw", "bottle"]),
           ("mvtec3d", "image_AUROC", [], [])]


def synthetic_records(count: int, seed: int = 0) -> list[tuple[str, dict]]:
    """``count`` (folder, record) pairs in the worker's format with random metrics."""
    from iadbe.benchmark.study import study_tables

    rng = np.random.default_rng(seed)
    tables = study_tables()["tables"]
    models = sorted(tables["mvtec/image_AUROC"]["rows"])
    found = []
    for run_seed in range(100):
        for dataset in ("mvtec", "visa", "mvtec3d"):
            for model in models:
                for category in tables[f"{dataset}/image_AUROC"]["categories"]:
                    metrics = {name: float(rng.uniform(0.4, 1.0)) for name in (
                        "image_AUROC", "image_AUPR", "image_F1", "image_F1_oracle", "image_false_alarm_rate",
                        "image_miss_rate", "pixel_AUROC", "pixel_AUPR", "pixel_F1", "pixel_F1_oracle",
                        "pixel_false_alarm_rate", "pixel_miss_rate", "pixel_AUPRO")}
                    record = {
                        "schema": 1, "run_id": f"{model}__{category}__seed{run_seed}", "status": "ok",
                        "model": model, "dataset": dataset, "category": category, "seed": run_seed,
                        "mode": "per_category", "backbone": "tf_efficientnet_lite0", "metrics": metrics,
                        "config": {"image_size": [256, 256], "model": model, "backbone": "tf_efficientnet_lite0"},
                        "spec": {"model": model, "dataset": dataset, "category": category, "image_size": 256},
                        "training_time_s": float(rng.uniform(5, 500)), "epochs_trained": float(rng.integers(1, 50)),
                        "thresholds": {"rule": "normal-tail/v1", "false_alarm_rate": 0.05,
                                       "pixel_false_alarm_rate": 0.01},
                        "test_counts": {"images": 112, "anomalous": 87}, "train_images": 210,
                        "inference_ms": {"torch": {"median_ms": 50.0}, "openvino": {"median_ms": 10.0}},
                        "peak_rss_mb": 900.0, "versions": {"anomalib": "2.7.0"}, "wall_time_s": 60.0}
                    found.append((f"seed{run_seed}/{dataset}", record))
                    if len(found) == count:
                        return found
    return found


def write_records(results: Path, records: list[tuple[str, dict]]) -> None:
    from iadbe.benchmark.runs import write_record

    for folder, record in records:
        write_record(results / folder / "runs" / f"{record['run_id']}.json", record)


def in_process(results: Path, rounds: int) -> tuple[float, float]:
    """(first load s, median filter change s) of the handler's library part, in this process."""
    import gradio as gr

    from iadbe.benchmark import leaderboard, leaderboard_view

    def handler(dataset, metric, models, categories):
        board = leaderboard.load_leaderboard({"results": results})
        view = board.view(dataset, metric, models, categories)
        runs = board.runs(models, categories)
        frame = gr.Dataframe(interactive=False)
        frame.postprocess(leaderboard_view.table_cells(view.table, view.value_columns, view.best()))
        frame.postprocess(leaderboard_view.table_cells(runs, ["image AUROC"], leaderboard_view.best_in_columns(runs, ["image AUROC"])))
        board.auroc_vs_time(dataset), view.per_category(), board.ours_against_study(dataset, metric, models)

    started = time.perf_counter()
    handler("mvtec", "image_AUROC", [], [])
    first = time.perf_counter() - started
    times = []
    for _ in range(rounds):
        for change in CHANGES:
            began = time.perf_counter()
            handler(*change)
            times.append(time.perf_counter() - began)
    return first, statistics.median(times)


def through_client(url: str, rounds: int) -> tuple[float, float, float]:
    """(first call s, median and max filter change s) of ``/leaderboard`` through gradio_client."""
    from iadbe.app.client import connect

    client = connect(url)
    started = time.perf_counter()
    client.predict("mvtec", "image_AUROC", [], [], api_name="/leaderboard")
    first = time.perf_counter() - started
    times = []
    for _ in range(rounds):
        for change in CHANGES:
            began = time.perf_counter()
            client.predict(*change, api_name="/leaderboard")
            times.append(time.perf_counter() - began)
    return first, statistics.median(times), max(times)


#: In the page: the time of the next pointer press on an option (the visitor's pick), kept in the page.
_WATCH_PICK = """() => { window.__lbPicked = null;
  document.addEventListener('pointerdown', () => { window.__lbPicked ??= performance.now(); },
                            {capture: true, once: true}); }"""
#: In the page, polled on every animation frame: the new dataset's table is there; notes when it first was.
_TABLE_SHOWS = """(name) => {
  const shown = Array.from(document.querySelectorAll('#leaderboard [role=columnheader]')).some(h => h.title === name)
    && document.querySelector('#leaderboard [role=gridcell]');
  if (shown) window.__lbShown = performance.now();
  return shown; }"""


def in_browser(url: str, rounds: int) -> tuple[list[float], list[float]] | None:
    """Seconds from picking another dataset to the table showing its first category, per pick, in a real
    browser: (measured in the page, from the pointer press on the option to the first animation frame with
    the new table; and the same measured from Python around Playwright's click, which adds Playwright's own
    checks before it presses, ~0.25 s here). None without a browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not CHROMIUM.is_file():
        return None
    from iadbe.benchmark.study import study_tables

    tables = study_tables()["tables"]
    in_page, around_click = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_role("tab", name="Benchmark", exact=True).click()
        page.locator("#leaderboard [role=gridcell]").first.wait_for()
        for _ in range(rounds):
            for dataset in ("visa", "mvtec3d", "mvtec"):
                first_category = tables[f"{dataset}/image_AUROC"]["categories"][0]
                page.locator("#lb-dataset input").click()
                option = page.get_by_role("option", name=dataset, exact=True)
                option.wait_for()
                page.evaluate(_WATCH_PICK)
                began = time.perf_counter()
                option.click()
                page.wait_for_function(_TABLE_SHOWS, arg=first_category, polling="raf")
                around_click.append(time.perf_counter() - began)
                in_page.append(page.evaluate("() => (window.__lbShown - window.__lbPicked) / 1000"))
        browser.close()
    return in_page, around_click


def measure(records: int = 1000, rounds: int = 5, browser: bool = True) -> list[tuple[str, str, str, float, bool | None]]:
    """Rows of (target, measured, reference, ratio, passed) for bench/run_all.py; ratio = measured / 1 s."""
    app = start_app({"bench-padim": trained_model("padim")})  # one model: the app builds no demo model
    load_before = os.getloadavg()[0]
    try:
        # the same browser measurement with only the runs shipped in docs/benchmark: what the records add
        baseline = in_browser(app.url, rounds) if browser else None
        results = app.home / "benchmark"  # the app's results folder (IADBE_HOME/benchmark)
        made = synthetic_records(records)
        write_records(results, made)
        count = len(list(results.rglob("runs/*.json")))
        first_lib, change_lib = in_process(results, rounds)
        first, median, worst = through_client(app.url, rounds)
        shown = in_browser(app.url, rounds) if browser else None
    finally:
        app.stop()
    load = f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    rows = [(f"leaderboard filter change, {count} records (gradio_client)",
             f"{median:.3f} s median, {worst:.3f} s max; first {first:.2f} s", f"{TARGET_S:.0f} s",
             median / TARGET_S, worst <= TARGET_S),
            (f"  the handler in-process ({count} records)", f"{change_lib:.3f} s; first {first_lib:.2f} s",
             "(information)", change_lib / TARGET_S, None)]
    if shown is not None and baseline is not None:
        picked, clicked = shown
        rows[1:1] = [
            (f"leaderboard filter change, {count} records (browser: pick to new table)", spread(picked),
             f"{TARGET_S:.0f} s", statistics.median(picked) / TARGET_S, max(picked) <= TARGET_S),
            ("  the same from Python, Playwright's click included (browser)", spread(clicked), "(information)",
             statistics.median(clicked) / TARGET_S, None),
            ("  pick to new table, only docs/benchmark's runs (browser)", spread(baseline[0]), "(information)",
             statistics.median(baseline[0]) / TARGET_S, None)]
    rows.append((f"  ({load})", "", "", 0.0, None))
    return rows


def spread(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.3f} s median, {max(seconds):.3f} s max"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    rows = measure(args.records, args.rounds, not args.no_browser)
    print(f"{'target':<72} {'measured':<44} {'reference':<14} {'ratio':>6}  result")
    for target, measured, reference, ratio, passed in rows:
        verdict = "info" if passed is None else ("PASS" if passed else "FAIL")
        print(f"{target:<72} {measured:<44} {reference:<14} {ratio:6.2f}  {verdict}")
    print(json.dumps({"ratio_to_1s_target": round(rows[0][3], 3)}))


if __name__ == "__main__":
    main()
