"""The leaderboard (iadbe/benchmark/leaderboard.py): the study's tables and our runs in one table (issue 21).

The Benchmark tab's browser test is in tests/test_browser.py; the 1,000-record timing in bench/leaderboard.py.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from iadbe.benchmark.leaderboard import STUDY, load_leaderboard
from iadbe.benchmark.leaderboard_cells import thresholds_used
from iadbe.benchmark.runs import write_record
from iadbe.benchmark.study import study_tables


def _record(model, category, seed=0, image=0.8, *, dataset="mvtec3d", mode="per_category", metrics=None,
            thresholds=None, size=(256, 256), epochs=None, time_s=10.0, backbone="tf_efficientnet_lite0"):
    record = {"run_id": f"{model}__{category}__seed{seed}", "status": "ok", "model": model, "category": category,
              "dataset": dataset, "seed": seed, "mode": mode, "backbone": backbone, "training_time_s": time_s,
              "epochs_trained": epochs, "config": {"image_size": list(size)},
              "metrics": {"image_AUROC": image, "pixel_AUROC": 0.9, "pixel_AUPRO": 0.8, **(metrics or {})}}
    if thresholds:
        record["thresholds"] = thresholds
    return record


def _write(folder: Path, records) -> None:
    for record in records:
        write_record(folder / "runs" / f"{record['run_id']}.json", record)


def test_the_study_tables_are_on_the_board_with_their_columns_and_rows(tmp_path):
    board = load_leaderboard({})
    table = study_tables()["tables"]["mvtec/image_AUROC"]
    view = board.view("mvtec", "image_AUROC")
    assert view.categories == table["categories"] and len(view.categories) == 15
    assert len(view.table) == 16 and set(view.table["benchmark"]) == {STUDY}
    assert set(view.table["model"]) == set(table["rows"])
    patchcore = view.table.set_index("model").loc["patchcore"]
    assert patchcore["screw"] == table["rows"]["patchcore"]["values"]["screw"] == 98.11
    assert patchcore["printed average"] == "98.91"  # printed, and its rows give it
    # every dataset and metric of the study is there, the unified table and Cardboard's F1 row included
    assert board.datasets()[:5] == ["mvtec", "visa", "mvtec3d", "kolektor", "cardboard"]
    assert "unified_image_AUROC" in board.metrics("mvtec")
    unified = board.view("mvtec", "unified_image_AUROC").table.set_index("model")
    assert len(unified) == len(study_tables()["tables"]["mvtec/unified_image_AUROC"]["rows"]) == 15
    # PatchCore's unified row has one number too few in the slides: kept, flagged, its cells left empty
    assert unified.loc["patchcore", "printed average"].startswith("⚠ row misaligned")
    assert unified.loc["patchcore", "categories"] == "0/15" and unified.loc["padim", "categories"] == "15/15"
    cardboard = board.view("cardboard", "image_F1")
    assert {"patchcore", "yolov8", "yolov9"} <= set(cardboard.table["model"])
    assert cardboard.best()["cardboard"] == {cardboard.table.index[cardboard.table["model"] == "yolov9"][0]}


def test_a_printed_average_the_rows_do_not_give_is_flagged_in_place():
    view = load_leaderboard({}).view("visa", "image_AUROC")
    cfa = view.table.set_index("model").loc["cfa"]
    assert cfa["printed average"] == "75.32 ⚠ its rows give 64.70"
    assert cfa["Average"] == pytest.approx(64.7, abs=0.005)
    assert "cfa: printed 75.32, its rows give 64.70" in view.flagged()
    assert view.table.set_index("model").loc["padim", "printed average"].count("⚠") == 0


def test_runs_become_rows_beside_the_study_with_their_settings(tmp_path):
    results = tmp_path / "results"
    _write(results / "tire", [
        _record("padim", "tire", 0, 0.70, metrics={"image_F1": 0.5, "image_F1_oracle": 0.9},
                thresholds={"rule": "normal-tail/v1", "false_alarm_rate": 0.05}),
        _record("padim", "tire", 1, 0.80, metrics={"image_F1": 0.7, "image_F1_oracle": 0.9},
                thresholds={"rule": "normal-tail/v1", "false_alarm_rate": 0.05}),
        _record("patchcore", "tire", 0, 0.86, size=(512, 384), epochs=1.0),
        {"run_id": "cfa__tire__seed0", "status": "failed", "model": "cfa", "category": "tire", "seed": 0}])
    board = load_leaderboard({"results": results})
    view = board.view("mvtec3d", "image_AUROC", categories=["tire"])
    ours = view.table[view.table["benchmark"] == "results/tire"].set_index("model")
    assert list(ours.index) == ["patchcore", "padim"]  # by Average within the benchmark; the failed run absent
    assert ours.loc["padim", "tire"] == pytest.approx(75.0)  # seeds pooled
    assert ours.loc["padim", "thresholds"] == "validation normals, 5 % false alarms"
    assert ours.loc["padim", "F1 calibrated"] == pytest.approx(60.0)
    assert ours.loc["padim", "F1 oracle"] == pytest.approx(90.0)
    assert ours.loc["patchcore", "image size"] == "512x384" and ours.loc["patchcore", "epochs"] == 1.0
    assert ours.loc["patchcore", "thresholds"] == "F1 optimum on validation anomalies (old rule)"
    assert ours.loc["padim", "printed average"] == ""
    study = view.table[view.table["benchmark"] == STUDY].set_index("model")
    assert study.loc["padim", "tire"] == 80.97
    assert view.best()["tire"] == {view.table.index[(view.table["benchmark"] == "results/tire")
                                                    & (view.table["model"] == "patchcore")][0]}  # 86 > the study's
    runs = board.runs()
    assert list(runs["benchmark"]) == ["results/tire", "results/tire"]
    assert runs.set_index("model").loc["padim", "study image AUROC"] == 80.97
    pairs = board.ours_against_study("mvtec3d", "image_AUROC", ["padim"])
    assert dict(zip(pairs["source"], pairs["value"])) == {"IADBE": 75.0, "study": 80.97}
    times = board.auroc_vs_time("mvtec3d").set_index(["source", "model"])
    assert times.loc[("results/tire", "padim"), "training s per category"] == 10.0
    summary = study_tables()["summary"]["padim"]["mvtec3d"]["time_s"]
    assert times.loc[(STUDY, "padim"), "training s per category"] == pytest.approx(summary / 10, abs=0.05)


def test_thresholds_of_records_written_before_the_rule_was_recorded():
    assert thresholds_used({"metrics": {"image_F1": 0.1}}) == "F1 optimum on validation anomalies (old rule)"
    # the oracle F1 came with the normal-tail rule: such a record was calibrated on the validation normals
    assert thresholds_used({"metrics": {"image_F1_oracle": 0.9}}) == "validation normals"
    assert thresholds_used({"thresholds": {"rule": "normal-tail/v1", "false_alarm_rate": 0.01}}) == \
        "validation normals, 1 % false alarms"
    assert thresholds_used({"thresholds": {"rule": "normal-tail/v2", "false_alarm_rate": 0.0312,
                                           "defect_share": 0.131}}) == \
        "best expected F1 on real validation defects at a 13.1 % defect share, 3.1 % false alarms"
    assert thresholds_used({"thresholds": {"rule": "normal-tail/v2", "false_alarm_rate": 0.05,
                                           "defect_share": None}}) == "validation normals, 5 % false alarms"


def test_one_to_all_runs_go_to_the_studys_unified_table(tmp_path):
    record = _record("padim", "bottle", dataset="mvtec", mode="one_to_all")
    record["per_category"] = {"bottle": {"image_AUROC": 0.9}, "cable": {"image_AUROC": 0.4}}
    _write(tmp_path / "mvtec", [record])
    view = load_leaderboard({"r": tmp_path}).view("mvtec", "unified_image_AUROC", models=["padim"])
    ours = view.table[view.table["benchmark"] == "r/mvtec"].iloc[0]
    assert (ours["bottle"], ours["cable"], ours["categories"]) == (pytest.approx(90.0), pytest.approx(40.0), "2/15")
    assert list(view.table["model"]) == ["padim", "padim"]


def test_filters_restrict_rows_and_columns_and_the_average_follows():
    board = load_leaderboard({})
    view = board.view("mvtec", "image_AUROC", models=["padim", "cfa"], categories=["bottle", "screw"])
    assert sorted(view.table["model"]) == ["cfa", "padim"] and view.categories == ["screw", "bottle"]
    padim = view.table.set_index("model").loc["padim"]
    assert padim["Average"] == pytest.approx((78.95 + 99.52) / 2)
    assert board.view("mvtec", "image_AUROC", models=["nothing"]).table.empty


def test_exports_mark_the_best_like_the_benchmark_reports():
    view = load_leaderboard({}).view("mvtec3d", "image_AUROC", models=["padim", "patchcore"], categories=["tire"])
    rows = list(csv.DictReader(io.StringIO(view.to_csv())))
    assert [r["model"] for r in rows] == ["padim", "patchcore"] and float(rows[0]["tire"]) == 80.97
    markdown = view.to_markdown()
    assert "| padim | study | **80.97** | - | 1/1 | **80.97** |" in markdown  # printed averages: all categories
    assert "| patchcore | study | 79.95 | - | 1/1 | 79.95 |" in markdown
    latex = view.to_latex()
    assert r"padim & study & \textbf{80.97} & -- & 1/1 & \textbf{80.97}" in latex and r"\bottomrule" in latex
    assert r"F1 oracle \\" in latex  # headers escaped, one line


def test_the_board_rereads_only_changed_benchmarks(tmp_path, monkeypatch):
    from iadbe.benchmark import leaderboard

    folder = tmp_path / "bench"
    _write(folder, [_record("padim", "tire", 0, 0.7)])
    reads = []
    original = leaderboard.load_records
    monkeypatch.setattr(leaderboard, "load_records", lambda out: reads.append(out) or original(out))
    first = load_leaderboard({"x": folder})
    load_leaderboard({"x": folder})
    assert len(reads) == 1  # nothing changed: not read again
    _write(folder, [_record("padim", "tire", 0, 0.9)])
    path = folder / "runs" / "padim__tire__seed0.json"
    stat = path.stat()
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new record even on coarse clocks
    second = load_leaderboard({"x": folder})
    assert len(reads) == 2
    value = lambda board: board.view("mvtec3d", "image_AUROC", categories=["tire"]).table.set_index(  # noqa: E731
        "benchmark").loc["x", "tire"]
    assert (value(first), value(second)) == (pytest.approx(70.0), pytest.approx(90.0))


def test_shown_cells_are_coloured_by_value_and_the_best_marked():
    from iadbe.benchmark.leaderboard_view import BEST_STYLE, table_cells

    view = load_leaderboard({}).view("mvtec3d", "image_AUROC", models=["padim", "cfa"], categories=["tire"])
    shown = table_cells(view.table, view.value_columns, view.best())
    headers = shown["headers"]
    assert headers[:6] == ["model", "benchmark", "Average", "printed average", "categories", "tire"]
    tire, size = headers.index("tire"), headers.index("image size")
    rows = {row[0]: (row, text, css) for row, text, css in zip(shown["data"], shown["metadata"]["display_value"],
                                                               shown["metadata"]["styling"])}
    padim, cfa = rows["padim"], rows["cfa"]
    assert padim[1][tire] == "80.97" and padim[0][tire] == 80.97 and BEST_STYLE in padim[2][tire]
    assert cfa[1][tire] == "0.00" and cfa[2][tire] == "background-color: hsl(0, 70%, 86%)"  # chance or worse: red
    assert padim[2][0] == "" and padim[1][size] == "-" and padim[0][size] is None  # names plain; "-" for none


def test_shipped_benchmarks_are_grouped_by_folder():
    docs = Path(__file__).resolve().parents[1] / "docs" / "benchmark"
    if not docs.is_dir():
        pytest.skip("no docs/benchmark in this checkout")
    board = load_leaderboard({"docs/benchmark": docs})
    runs = board.runs()
    expected = {(f"docs/benchmark/{p.parent.parent.relative_to(docs).as_posix()}", json.loads(p.read_text())["model"])
                for p in docs.rglob("runs/*.json") if json.loads(p.read_text())["status"] == "ok"}  # kfold/<category>
    assert set(zip(runs["benchmark"], runs["model"])) == expected


def test_a_visitor_sees_the_shared_benchmarks_and_only_their_own_runs(tmp_path, monkeypatch):
    """Shared mode (iadbe.workspaces): runs started in the app go to the visitor's workspace; the results
    browser and the leaderboard read the shipped runs, the server's results and that workspace only."""
    pytest.importorskip("gradio")
    from types import SimpleNamespace

    from iadbe import benchmark, constants
    from iadbe.app import benchmark_tab
    from iadbe.workspaces import identify, open_workspace

    monkeypatch.setattr(constants, "WORKSPACES_DIR", tmp_path / "workspaces")
    monkeypatch.setattr(benchmark, "RESULTS_DIR", tmp_path / "results")
    alice, bob = (open_workspace(identify(None, session, shared=True)) for session in ("alice", "bob"))
    for workspace, value in ((alice, 0.91), (bob, 0.55)):
        _write(benchmark_tab.own_results(workspace) / "mvtec3d", [_record("padim", "tire", 0, value)])
    _write(tmp_path / "results" / "mvtec3d", [_record("dfm", "tire", 0, 0.7)])
    roots = benchmark_tab.result_roots(alice)
    assert roots["your runs"] == alice.root / "benchmark" and roots["results"] == tmp_path / "results"
    assert bob.root not in [root for root in roots.values()] and not any(
        root.is_relative_to(bob.root) for root in roots.values())
    runs = load_leaderboard(roots).runs()
    ours = runs[runs["benchmark"].str.startswith(("your runs", "results"))]
    assert sorted(zip(ours["benchmark"], ours["model"], ours["image AUROC"].round(2))) == [
        ("results/mvtec3d", "dfm", 70.0), ("your runs/mvtec3d", "padim", 91.0)]
    # single-user mode: the server's results folder, as `iadbe benchmark` writes it
    local = open_workspace(identify(None, None, shared=False))
    assert benchmark_tab.own_results(local) == tmp_path / "results" and "your runs" not in \
        benchmark_tab.result_roots(local)
    # the results browser refuses another visitor's record
    monkeypatch.setattr(benchmark_tab, "visitor_workspace", lambda request, profile: alice)
    other = next((bob.root / "benchmark").rglob("*.json"))
    with pytest.raises(Exception, match="Only files of the benchmark results folders"):
        benchmark_tab.show_result(str(other), SimpleNamespace(session_hash="alice"))
    table, _, _ = benchmark_tab.show_result(str(next((alice.root / "benchmark").rglob("*.json"))))
    assert list(table["value"].columns) == ["field", "value"] and table["visible"]


def test_a_repeated_filter_pick_from_the_same_page_changes_nothing(monkeypatch):
    """Gradio 6's Dropdown sends ``input`` twice per picked option (seen in Chromium, tests/test_browser.py):
    the second of two identical filter events from one page within the window skips every output; other
    filters, other pages and later picks are computed."""
    pytest.importorskip("gradio")
    from types import SimpleNamespace

    import gradio as gr

    from iadbe.app import leaderboard_tab

    computed, drawn = [], ("board",) * leaderboard_tab.LEADERBOARD_OUTPUTS
    monkeypatch.setattr(leaderboard_tab, "leaderboard", lambda *args: computed.append(args[:4]) or drawn)
    clock = [100.0]
    monkeypatch.setattr(leaderboard_tab, "_REPEATS",
                        leaderboard_tab.RepeatedFilters(window_s=2.0, capacity=2, clock=lambda: clock[0]))
    page, other = SimpleNamespace(session_hash="page-a"), SimpleNamespace(session_hash="page-b")

    def pick(dataset, request=page, models=("padim",)):
        return leaderboard_tab.leaderboard_on_filter(dataset, "image_AUROC", list(models), [], request)

    assert pick("visa") == drawn
    skipped = pick("visa")
    assert skipped == (gr.skip(),) * leaderboard_tab.LEADERBOARD_OUTPUTS
    assert pick("visa", request=other)[0] == "board"  # another page
    assert pick("mvtec")[0] == "board" and pick("visa")[0] == "board"  # a new pick, and back
    assert pick("visa", models=("padim", "patchcore"))[0] == "board"  # one filter differs
    clock[0] += 2.5
    assert pick("visa", models=("padim", "patchcore"))[0] == "board"  # the same pick, later: computed
    assert pick("visa", request=SimpleNamespace(session_hash=None))[0] == "board"  # no page to tell apart
    assert pick("visa", request=SimpleNamespace(session_hash=None))[0] == "board"
    assert len(computed) == 8
    # at most `capacity` pages are remembered: the oldest is forgotten, so its repeat is computed
    for session in ("p1", "p2", "p3"):
        pick("kolektor", request=SimpleNamespace(session_hash=session))
    assert pick("kolektor", request=SimpleNamespace(session_hash="p1"))[0] == "board"
    assert pick("kolektor", request=SimpleNamespace(session_hash="p3")) == skipped
