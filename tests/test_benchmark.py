"""Benchmark engine: the study's tables as data, aggregation and tables, failures recorded, and (slow)
a CI-sized real benchmark on MVTec 3D-AD tire that is killed midway and resumed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iadbe import constants

PROJECT = Path(__file__).resolve().parents[1]
STUDY_TEXT = PROJECT.parent / "shared" / "reference" / "iadbe_study_slides.txt"
TIRE = constants.SHARED_DATA / "mvtec_3d"


# --------------------------------------------------------------------------- the study's tables
@pytest.mark.skipif(not STUDY_TEXT.is_file(), reason=f"the study's text is not at {STUDY_TEXT}")
def test_stored_study_tables_equal_a_fresh_parse_of_the_study_text():
    from iadbe.benchmark.study import parse_study_text, study_tables

    assert parse_study_text(STUDY_TEXT.read_text(encoding="utf-8")) == study_tables()


def test_study_cells_use_our_model_and_category_names():
    from iadbe.benchmark.study import study_value

    assert study_value("mvtec3d", "image_AUROC", "patchcore", "tire") == 79.95
    assert study_value("mvtec3d", "pixel_AUROC", "PaDiM", "tire") == 95.22
    assert study_value("mvtec", "image_AUROC", "RD", "metal_nut") == 100.0  # "RD", "Metal Nut" in the study
    assert study_value("mvtec", "image_AUROC", "stfpm", "screw") == 77.62  # printed "STPFM"
    assert study_value("mvtec3d", "image_AUROC", "reverse_distillation", "tire") is None  # printed "-"
    assert study_value("kolektor", "image_AUROC", "uflow", "kolektor") == 90.91


def test_recomputed_study_averages_find_the_wrong_ones():
    from iadbe.benchmark.study import check_study_averages

    checks = {(c.table, c.model): c for c in check_study_averages()}
    assert not checks[("mvtec3d/image_AUROC", "patchcore")].wrong  # 83.61 is the mean of its row
    fre = checks[("mvtec3d/image_AUROC", "fre")]
    assert fre.wrong and fre.printed == 72.75 and fre.recomputed == pytest.approx(67.75, abs=0.005)
    rd = checks[("mvtec3d/image_AUROC", "reverse_distillation")]  # averaged 8 of 10 categories, and wrongly
    assert rd.wrong and (rd.counted, rd.of) == (8, 10) and "8 of 10" in rd.describe()
    unified = checks[("mvtec/unified_image_AUROC", "patchcore")]  # a value is missing: the columns shift
    assert unified.wrong and "misaligned" in unified.describe()


def test_comparison_flags_differences_above_two_points_and_lists_wrong_averages():
    from iadbe.benchmark.study import compare_with_study, format_comparison

    rows = [{"model": "patchcore", "category": "tire", "image_AUROC": 0.7, "pixel_AUROC": 0.99},
            {"model": "padim", "category": "tire", "image_AUROC": 0.80, "pixel_AUROC": float("nan")}]
    found = {(c.model, c.metric): c for c in compare_with_study(rows, "mvtec3d")}
    assert found[("patchcore", "image_AUROC")].difference == pytest.approx(70 - 79.95)
    assert found[("patchcore", "image_AUROC")].flagged
    assert not found[("patchcore", "pixel_AUROC")].flagged  # 99.00 vs 99.20
    assert not found[("padim", "image_AUROC")].flagged  # 80.00 vs 80.97
    assert ("padim", "pixel_AUROC") not in found  # no number of ours: nothing to compare
    text = format_comparison(found.values(), "mvtec3d")
    assert "differs by more than 2 points" in text and "fre: printed average 72.75" in text


def test_f1_is_compared_with_the_study_like_with_like(monkeypatch):
    from iadbe.benchmark import study

    monkeypatch.setattr(study, "study_value", lambda dataset, metric, model, category:
                        85.0 if metric == "image_F1" else None)
    rows = [{"model": "patchcore", "category": "cardboard", "image_F1": 0.40, "image_F1_oracle": 0.90}]
    found = study.compare_with_study(rows, "folder")
    # the study chose its thresholds on the test set: our oracle F1 stands next to it, not our calibrated F1
    assert [(c.metric, c.ours, c.study) for c in found] == [("image_F1 (oracle)", 90.0, 85.0)]


def test_decision_table_puts_calibrated_f1_beside_the_oracle(tmp_path):
    from iadbe.benchmark.report import aggregate, write_outputs

    record = _record("padim", "a", 0, 0.8)
    record["metrics"].update(image_F1=0.60, image_F1_oracle=0.80, image_false_alarm_rate=0.05, image_miss_rate=0.5)
    text = write_outputs(tmp_path, [record], "mvtec3d")["md"].read_text()
    line = next(line for line in text.splitlines() if line.startswith("| PaDiM | a |"))
    assert "| 60.00 | 80.00 | 5.00 | 50.00 |" in line
    assert aggregate([record])[0]["image_F1_oracle"].mean == pytest.approx(0.8)


# --------------------------------------------------------------------------- tables from records
def _record(model, category, seed, image_auroc, pixel_auroc=0.9, time_s=10.0, status="ok"):
    return {"run_id": f"{model}__{category}__seed{seed}", "status": status, "model": model, "category": category,
            "seed": seed, "mode": "per_category", "backbone": "tf_efficientnet_lite0", "training_time_s": time_s,
            "metrics": {"image_AUROC": image_auroc, "pixel_AUROC": pixel_auroc, "pixel_AUPRO": 0.8},
            "inference_ms": {"torch": {"median_ms": 50.0}, "openvino": {"median_ms": 10.0}}, "peak_rss_mb": 900.0}


def test_tables_average_spread_and_bold_come_from_the_records():
    from iadbe.benchmark.report import aggregate, latex_table, markdown_table

    records = [_record("padim", "a", 0, 0.80), _record("padim", "a", 1, 0.90), _record("padim", "b", 0, 0.70),
               _record("patchcore", "a", 0, 0.95), _record("patchcore", "b", 0, 0.60),
               {"run_id": "dfm__a__seed0", "status": "failed", "model": "dfm", "category": "a", "seed": 0}]
    rows = aggregate(records)
    padim_a = next(r for r in rows if (r["model"], r["category"]) == ("padim", "a"))
    assert padim_a["image_AUROC"].mean == pytest.approx(0.85) and padim_a["seeds"] == [0, 1]
    assert padim_a["image_AUROC"].std == pytest.approx(math.sqrt(0.005))  # sample std of 0.8, 0.9
    table = markdown_table(rows, "image_AUROC")
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "85.00 ± 7.07" in lines["PaDiM"] and "**70.00**" in lines["PaDiM"]  # best on b
    assert "**95.00**" in lines["PatchCore"]  # best on a
    assert "77.50" in lines["PaDiM"] and "77.50" in lines["PatchCore"]  # averages: (85+70)/2, (95+60)/2
    assert "**77.50**" in lines["PaDiM"] and "**77.50**" in lines["PatchCore"]  # a tie: both bold
    assert "DFM" not in table  # failed runs are listed separately, not averaged
    tex = latex_table(rows, "image_AUROC")
    assert r"\textbf{95.00}" in tex and r"85.00 $\pm$ 7.07" in tex and tex.startswith(r"\begin{tabular}")


def test_outputs_are_written_and_failures_listed(tmp_path):
    from iadbe.benchmark.report import write_outputs

    records = [_record("padim", "a", 0, 0.8), _record("patchcore", "a", 0, 0.9, time_s=100.0),
               {"run_id": "dfm__a__seed0", "status": "failed", "model": "dfm", "category": "a", "seed": 0,
                "reason": "killed by SIGKILL (out of memory?)"}]
    files = write_outputs(tmp_path, records, "mvtec3d")
    assert {"csv", "md", "tex", "auroc_vs_time", "per_category_image_AUROC", "radar"} <= set(files)
    for key in ("auroc_vs_time", "radar"):
        assert files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "`dfm__a__seed0`: killed by SIGKILL" in files["md"].read_text()
    header = files["csv"].read_text().splitlines()[0].split(",")
    assert {"image_AUROC_mean", "image_AUROC_std", "openvino_ms_mean", "peak_rss_mb_mean"} <= set(header)


def test_timing_table_shows_the_epochs_a_time_budget_allowed():
    from iadbe.benchmark.report import aggregate, timing_table

    budgeted = {**_record("stfpm", "a", 0, 0.7, time_s=120.0), "epochs_trained": 3.5, "max_train_minutes": 2.0}
    table = timing_table(aggregate([budgeted, _record("padim", "a", 0, 0.8)]))
    lines = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines()[2:]}
    assert "epochs trained" in table.splitlines()[0]
    assert lines["STFPM"][3].strip() == "3.50" and lines["STFPM"][4].strip() == "120.0"
    assert lines["PaDiM"][3].strip() == "-"  # records from before the column: shown as unknown


def test_plan_covers_modes_and_refuses_bad_settings(tmp_path):
    from iadbe.benchmark import plan_runs
    from iadbe.errors import SettingsError

    root = tmp_path / "data"
    for category in ("alpha", "beta"):
        for sub in ("train/good", "test/good"):
            (root / category / sub).mkdir(parents=True)
    per = plan_runs(["padim", "patchcore"], "mvtec", root, seeds=(0, 1))
    assert [s.run_id for s in per][:3] == ["padim__alpha__seed0", "padim__alpha__seed1", "padim__beta__seed0"]
    assert len(per) == 8
    one = plan_runs(["padim"], "mvtec", root, ["alpha"], mode="one_to_all")
    assert one[0].test_categories == ("alpha",) and one[0].run_id == "one_to_all__padim__alpha__seed0"
    (unified,) = plan_runs(["padim"], "mvtec", root, mode="unified")
    assert unified.test_categories == ("alpha", "beta") and unified.category == "all"
    with pytest.raises(SettingsError, match="unknown model"):
        plan_runs(["nosuchmodel"], "mvtec", root)
    with pytest.raises(SettingsError, match="mode"):
        plan_runs(["padim"], "mvtec", root, mode="sideways")


def test_a_failing_run_is_recorded_and_the_next_one_still_runs(tmp_path):
    from iadbe.benchmark.runner import run_in_process
    from iadbe.benchmark.runs import RunSpec, finished_ids, load_records

    broken = RunSpec("padim", "folder", str(tmp_path / "missing"), "x")
    record = run_in_process(broken, tmp_path / "out", timeout_s=120)
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert "not found" in record["reason"].lower() or "not found" in record["log_tail"].lower()
    assert [r["run_id"] for r in load_records(tmp_path / "out")] == ["padim__x__seed0"]
    assert finished_ids(tmp_path / "out") == set()  # a failed run is tried again on resume


# --------------------------------------------------------------------------- real data (slow)
def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "iadbe", "benchmark", "--models", "padim,patchcore", "--dataset", "mvtec3d",
            "--root", str(TIRE), "--image-size", "128", "--max-train-images", "20", "--out", str(out), *extra]


@pytest.mark.slow
@pytest.mark.skipif(not (TIRE / "tire").is_dir(), reason=f"real data not found at {TIRE}/tire")
def test_ci_sized_benchmark_on_tire_killed_midway_then_resumed(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    first = subprocess.Popen(_cli(out), cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    padim = out / "runs" / "padim__tire__seed0.json"
    deadline = time.monotonic() + 900
    while not padim.is_file() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(1)
    assert padim.is_file(), first.stdout.read().decode()[-3000:] if first.poll() is not None else "timed out"
    first.send_signal(signal.SIGKILL)  # midway: PatchCore's run has started
    first.wait()
    time.sleep(2)  # the worker dies with its parent (PR_SET_PDEATHSIG)
    assert not (out / "runs" / "patchcore__tire__seed0.json").exists()
    padim_written = padim.stat().st_mtime_ns

    second = subprocess.run(_cli(out, "--compare-study"), cwd=PROJECT, env=env, capture_output=True, text=True,
                            timeout=1200)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "1 run, 1 skipped (already done), 0 failed" in second.stdout
    assert padim.stat().st_mtime_ns == padim_written  # not run again
    records = {json.loads(p.read_text())["model"]: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    assert set(records) == {"padim", "patchcore"} and all(r["status"] == "ok" for r in records.values())
    for record in records.values():
        counts = record["test_counts"]
        assert (counts["images"], counts["anomalous"]) == (112, 87)
        assert counts["true_positives"] + counts["false_negatives"] == 87
        assert set(record["metrics"]) >= {"image_AUROC", "image_AUPR", "image_F1", "pixel_AUROC", "pixel_AUPRO"}
        assert record["inference_ms"]["openvino"]["median_ms"] > 0 and record["peak_rss_mb"] > 100
        assert {"anomalib", "torch", "openvino"} <= set(record["versions"])
    for name in ("results.csv", "results.md", "results.tex", "auroc_vs_time.png", "per_category_image_AUROC.png",
                 "radar.png"):
        assert (out / name).is_file(), name
    assert "| PaDiM |" in (out / "results.md").read_text() and "| PatchCore |" in (out / "results.md").read_text()
    assert "padim                  tire           image_AUROC" in second.stdout  # --compare-study


@pytest.mark.slow
def test_one_to_all_and_unified_modes_score_every_category(tmp_path):
    from test_app import make_parts_dataset

    from iadbe.benchmark import run_benchmark

    root = tmp_path / "parts"
    for seed, category in enumerate(("alpha", "beta")):
        make_parts_dataset(root / category, seed=seed, size=64)
    one = run_benchmark(["padim"], "folder", root, ["alpha"], image_size=64, mode="one_to_all", out=tmp_path / "o")
    (record,) = one.records
    assert record["status"] == "ok", record.get("log_tail")
    assert set(record["per_category"]) == {"alpha"}  # tested on the categories named
    both = run_benchmark(["padim"], "folder", root, image_size=64, mode="unified", out=tmp_path / "u")
    (record,) = both.records
    assert record["status"] == "ok", record.get("log_tail")
    assert record["category"] == "all" and set(record["per_category"]) == {"alpha", "beta"}
    from iadbe.data import load_dataset

    tests = sum(len(load_dataset("folder", root, c).test) for c in ("alpha", "beta"))
    assert record["test_counts"]["images"] == tests  # one model, tested on both categories' test sets
    table = (tmp_path / "u" / "results.md").read_text()
    assert "one model trained on all categories together" in table and "| alpha | beta |" in table


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="Linux's /proc only")
def test_a_worker_reports_its_own_peak_memory_not_its_parents():
    """getrusage's ru_maxrss carries the parent's RSS through fork + exec: a worker started by a 5 GB process
    reported 5 GB. peak_rss_mb reads the worker's own high-water mark."""
    import numpy as np

    from iadbe.benchmark.worker import peak_rss_mb
    from iadbe.constants import child_process_env

    held = np.ones(96 * 1024 * 1024, dtype=np.float64)  # 768 MiB, touched
    code = "from iadbe.benchmark.worker import peak_rss_mb; print(peak_rss_mb())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env=child_process_env(), timeout=120)
    assert peak_rss_mb() >= 768
    assert float(child.stdout.strip().splitlines()[-1]) < 400  # the parent's 768 MiB is not the child's
    del held


def test_unified_mode_pools_the_categories_defect_shares_by_their_real_validation_defects() -> None:
    from types import SimpleNamespace

    from iadbe.benchmark.worker import pooled_defect_share
    from iadbe.data.samples import SYNTHETIC_TYPE

    def part(defects: int, share: float | None, synthetic: int = 0) -> SimpleNamespace:
        val = [SimpleNamespace(is_anomalous=True, defect_type="crack")] * defects
        val += [SimpleNamespace(is_anomalous=True, defect_type=SYNTHETIC_TYPE)] * synthetic
        return SimpleNamespace(val=val + [SimpleNamespace(is_anomalous=False, defect_type="good")], defect_share=share)

    # 10 defects of 100 images and 30 of 100: 40 of 200
    assert pooled_defect_share([part(10, 0.1), part(30, 0.3), part(0, None, synthetic=5)]) == pytest.approx(0.2)
    assert pooled_defect_share([part(0, None, synthetic=5)]) is None
