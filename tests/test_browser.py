"""The app in a real browser: headless Chromium (Debian's ``chromium`` package) driven by Playwright.

Uploads a real image (a MVTec 3D-AD tire image when ``../shared/data`` is there, else a demo texture
image), runs the detector, waits for the heatmap, and saves a screenshot of every tab under
``test-artifacts/screenshots/``. Playwright's own browser download is never used
(``executable_path=/usr/bin/chromium``); the test is skipped with the reason when either is missing.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import gradio as gr  # at module level: Gradio resolves a handler's `request: gr.Request` in its globals
import numpy as np
import pytest
from test_app import FIXTURE_MODEL, PROJECT, SCORE_TOL, library_prediction, running_app, zip_folder

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update"]
SCREENSHOTS = PROJECT / "test-artifacts" / "screenshots"
TIRE = PROJECT.parent / "shared" / "data" / "mvtec_3d" / "tire" / "test" / "cut" / "rgb" / "000.png"
TABS = ("Training", "Models", "Benchmark")
LABEL_SHOWN = "() => ((document.querySelector('#label textarea') || {}).value || '').length > 0"

if not CHROMIUM.is_file():
    pytest.skip("no Chromium at /usr/bin/chromium: `apt-get install -y chromium` to run the browser test",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="`pip install playwright` to run the browser test")


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as session:
        yield session


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory, hub_server, playwright):
    server = running_app(tmp_path_factory, hub_server)
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(60_000)
    yield server, page
    browser.close()


def _real_image(server) -> Path:
    if TIRE.is_file():
        return TIRE
    return sorted((server.home / "demo_dataset" / "defect").glob("*.png"))[0]


def _label(page) -> str:
    return page.locator("#label textarea").input_value()


def test_upload_detect_and_screenshot_every_tab(browser_page):
    server, page = browser_page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    page.goto(server.url)
    page.locator("#detect").wait_for()
    loaded = time.perf_counter() - began

    page.locator("#input-image input[type=file]").set_input_files(str(_real_image(server)))
    page.locator("#input-image img").first.wait_for()  # the upload is shown
    page.locator("#detect").click()
    page.locator("#heatmap img").wait_for(state="visible")
    page.wait_for_function(LABEL_SHOWN)
    detected = time.perf_counter() - began
    score = float(page.locator("#score input").input_value())
    # what the library predicts with the page's default model (the first local one; which one that is depends
    # on the tests that ran before): the score shown (4 decimals) and the label must be that model's
    local = [d for d in sorted(server.store.iterdir()) if (d / "iadbe.json").is_file()]
    expected = [library_prediction(d, _real_image(server)) for d in local]
    matching = [e for e in expected if abs(e.score - score) <= 1e-4 + 1e-6]
    assert matching, (score, [(d.name, e.score) for d, e in zip(local, expected)])
    assert _label(page) == matching[0].label_text
    page.screenshot(path=str(SCREENSHOTS / "inference.png"), full_page=True)

    # an example image, then the threshold box: the pictures are re-drawn without running the model
    first_heatmap = page.locator("#heatmap img").get_attribute("src")
    page.locator("#examples img").nth(2).click()
    page.locator("#detect").click()
    page.wait_for_function(f"() => document.querySelector('#heatmap img').src !== {first_heatmap!r}")
    threshold = page.get_by_label("number input for threshold (0.5 = calibrated)")
    threshold.fill("1")
    threshold.press("Enter")
    page.wait_for_function("() => (document.querySelector('#label textarea') || {}).value === 'normal'")
    page.screenshot(path=str(SCREENSHOTS / "inference_example_threshold_1.png"), full_page=True)

    for tab in TABS:
        page.get_by_role("tab", name=tab, exact=True).click()
        page.wait_for_timeout(700)
        page.screenshot(path=str(SCREENSHOTS / f"{tab.lower()}.png"), full_page=True)
    assert page.get_by_text(FIXTURE_MODEL).count() > 0  # the Models tab lists the model
    print(f"page load {loaded:.1f} s, upload + detect {detected - loaded:.1f} s")
    assert {p.name for p in SCREENSHOTS.glob("*.png")} >= {"inference.png", "training.png", "models.png",
                                                            "benchmark.png"}


def _picture(page, selector: str):
    """The pixels of an image the page shows (fetched from its src)."""
    import io

    import numpy as np
    from PIL import Image

    source = page.locator(f"{selector} img").get_attribute("src")
    body = page.request.get(source).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(int)


def test_a_flagged_image_shows_a_region_and_training_shows_the_histogram(browser_page, tmp_path):
    from test_app import make_parts_dataset, zip_folder

    server, page = browser_page
    page.goto(server.url)
    page.locator("#input-image input[type=file]").set_input_files(str(_real_image(server)))
    page.locator("#input-image img").first.wait_for()
    page.locator("#detect").click()
    page.wait_for_function(LABEL_SHOWN)
    threshold = page.get_by_label("number input for threshold (0.5 = calibrated)")
    for value, label in (("0.02", "anomalous"), ("1", "normal")):
        before = page.locator("#mask img").get_attribute("src")
        threshold.fill(value)
        threshold.press("Enter")
        page.wait_for_function(f"() => (document.querySelector('#label textarea') || {{}}).value === {label!r}"
                               f" && document.querySelector('#mask img').src !== {before!r}")
        difference = np.abs(_picture(page, "#mask") - _picture(page, "#original")).max()
        if label == "anomalous":
            assert difference > 60, "a flagged image must show a marked region"
        else:
            assert difference < 30, "an image labelled normal must show no region"

    archive = zip_folder(make_parts_dataset(tmp_path / "parts", seed=3), tmp_path / "parts.zip")
    page.get_by_role("tab", name="Training", exact=True).click()
    page.locator("#dataset-zip input[type=file]").set_input_files(str(archive))
    page.get_by_role("button", name="Train", exact=True).click()
    page.locator("#val-histogram img").wait_for(state="visible", timeout=240_000)
    histogram = _picture(page, "#val-histogram")
    assert histogram.shape[0] > 200 and histogram.std() > 10  # a drawn chart, not a blank
    page.screenshot(path=str(SCREENSHOTS / "training_histogram.png"), full_page=True)


GRID_ROWS = """(id) => Array.from(document.querySelectorAll(`#${id} [role=row]`)).map(r =>
  Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim())).filter(r => r.length)"""
GRID_HEADERS = "(id) => Array.from(document.querySelectorAll(`#${id} [role=columnheader]`)).map(h => h.title)"


def _grid(page, element_id: str) -> list[dict[str, str]]:
    """The rows a Gradio dataframe shows, as {column: text}."""
    headers = page.evaluate(GRID_HEADERS, element_id)
    return [dict(zip(headers, row)) for row in page.evaluate(GRID_ROWS, element_id)]


SCROLL_GRID = """([id, top]) => { const boxes = Array.from(document.querySelectorAll(`#${id} *`))
  .filter(e => e.scrollHeight > e.clientHeight + 4 && getComputedStyle(e).overflowY !== 'visible');
  boxes.forEach(e => { e.scrollTop = top; }); return boxes.length ? boxes[0].scrollHeight : 0; }"""


def _all_grid_rows(page, element_id: str) -> list[dict[str, str]]:
    """Every row of a Gradio dataframe, scrolling through it (a long table renders only the rows in view)."""
    rows, top = {}, 0
    while True:
        height = page.evaluate(SCROLL_GRID, [element_id, top])
        page.wait_for_timeout(150)
        for row in _grid(page, element_id):
            rows[tuple(row.items())] = row
        top += 300
        if top > height:
            page.evaluate(SCROLL_GRID, [element_id, 0])
            return list(rows.values())


def _choose(page, dropdown: str, option: str) -> None:
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_inspecting_labelled_defects_offers_the_supervised_detectors(browser_page, tmp_path):
    """Inspect a YOLO export with labelled defects: the tab says what it found and the model list gains the
    U-Net; a new upload without labelled defects takes it away again."""
    from test_training_tab_supervised import make_yolo_parts

    server, page = browser_page
    labelled = zip_folder(make_yolo_parts(tmp_path / "labelled"), tmp_path / "labelled.zip")
    page.goto(server.url)
    page.get_by_role("tab", name="Training", exact=True).click()

    def options() -> list[str]:
        """The dropdown's choices as the page lists them once opened (all_inner_texts does not wait)."""
        page.locator("#train-model input").click()
        page.get_by_role("option").first.wait_for()
        names = [text.strip().splitlines()[-1] for text in page.get_by_role("option").all_inner_texts()]  # "✓\nPaDiM"
        page.keyboard.press("Escape")
        page.get_by_role("option").first.wait_for(state="detached")
        return names

    def options_once(holds, timeout_s: float = 20.0) -> list[str]:
        """The choices once ``holds(choices)``: the note and the dropdown are one event's outputs, but the
        browser may render the note a moment before the dropdown's list. Fails with the last list seen."""
        deadline = time.monotonic() + timeout_s
        while not holds(names := options()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return names

    assert "U-Net Lite0 (supervised)" not in options()
    page.locator("#dataset-zip input[type=file]").set_input_files(str(labelled))
    page.get_by_role("button", name="Inspect", exact=True).click()
    page.wait_for_function("() => (document.querySelector('#offer-note') || {}).innerText"
                           "?.includes('labelled defects: the supervised detectors are offered')")
    assert "can use 4 labelled defects for training" in page.get_by_label("dataset report").input_value()
    offered = options_once(lambda names: "U-Net Lite0 (supervised)" in names)
    assert "U-Net Lite0 (supervised)" in offered and "PaDiM" in offered
    page.screenshot(path=str(SCREENSHOTS / "training_supervised_offered.png"), full_page=True)
    page.locator("#dataset-zip button[aria-label='Clear']").first.click()
    page.wait_for_function("() => (document.querySelector('#offer-note') || {}).innerText?.includes('once')")
    assert "U-Net Lite0 (supervised)" not in options_once(lambda names: "U-Net Lite0 (supervised)" not in names)


def test_benchmark_tab_opens_on_the_leaderboard(browser_page):
    """Issue 21: with no click, the study's MVTec image AUROC table and the runs in docs/benchmark; VisA shows
    the study's wrong CFA average flagged; a cell fills the run form."""
    import json

    from iadbe.benchmark.study import study_tables

    server, page = browser_page
    page.goto(server.url)
    page.get_by_role("tab", name="Benchmark", exact=True).click()
    page.locator("#leaderboard [role=gridcell]").first.wait_for()
    page.locator("#lb-runs [role=gridcell]").first.wait_for()

    table = study_tables()["tables"]["mvtec/image_AUROC"]
    headers = page.evaluate(GRID_HEADERS, "leaderboard")
    assert headers[:5] == ["model", "benchmark", "Average", "printed average", "categories"]
    assert headers[5:20] == table["categories"] and len(table["categories"]) == 15
    rows = _grid(page, "leaderboard")
    assert len(rows) == 16 and {r["model"] for r in rows} == set(table["rows"])
    for row in rows:  # the study's numbers as printed, two decimals
        values = table["rows"][row["model"]]["values"]
        assert [row[c] for c in table["categories"]] == ["-" if values[c] is None else f"{values[c]:.2f}"
                                                         for c in table["categories"]]
    best = page.locator('#leaderboard [role=gridcell][data-col="5"]').evaluate_all(
        "cells => cells.filter(c => c.style.fontWeight === 'bold').map(c => c.innerText.trim())")
    assert best == [f"{max(r['values']['screw'] for r in table['rows'].values() if r['values']['screw']):.2f}"]

    docs = PROJECT / "docs" / "benchmark"
    records = {p: json.loads(p.read_text()) for p in docs.rglob("runs/*.json")}
    folder = {p: f"docs/benchmark/{p.parent.parent.relative_to(docs).as_posix()}" for p in records}
    shipped = {(folder[p], record["model"]) for p, record in records.items()}
    categories = {(folder[p], record["category"]) for p, record in records.items()}
    runs = _all_grid_rows(page, "lb-runs")
    shown = {(r["benchmark"], r["model"]) for r in runs if r["benchmark"].startswith("docs/benchmark/")}
    assert {b for b, _ in shipped} >= {"docs/benchmark/tire", "docs/benchmark/tire_all"}
    visible = [r for r in runs if r["benchmark"].startswith("docs/benchmark/")]
    assert shown and shown <= shipped
    # each run shows its record's category (the tire benchmarks; the k-fold table's one folder per category)
    assert {(r["benchmark"], r["categories"]) for r in visible} <= categories
    assert {c for b, c in categories if not b.startswith("docs/benchmark/kfold/")} == {"tire"}
    assert {"docs/benchmark/tire", "docs/benchmark/tire_all"} <= {b for b, _ in shown}
    assert page.locator("#result-file input").input_value().endswith(".md")  # the results browser, filled
    page.screenshot(path=str(SCREENSHOTS / "benchmark_leaderboard.png"), full_page=True)

    began = time.perf_counter()
    _choose(page, "lb-dataset", "visa")
    page.wait_for_function("() => document.querySelector('#lb-summary').innerText.includes(', visa')")
    page.wait_for_function("() => Array.from(document.querySelectorAll('#leaderboard [role=columnheader]'))"
                           ".some(h => h.title === 'candle')")
    print(f"leaderboard updated {time.perf_counter() - began:.2f} s after choosing VisA")
    cfa = next(r for r in _grid(page, "leaderboard") if r["model"] == "cfa")
    assert cfa["printed average"] == "75.32 ⚠ its rows give 64.70" and cfa["Average"] == "64.70"
    assert "cfa: printed 75.32, its rows give 64.70" in page.locator("#lb-summary").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "benchmark_leaderboard_visa.png"))

    row = page.locator("#leaderboard [role=row]", has=page.get_by_role("gridcell", name="cfa", exact=True)).first
    row.locator('[role=gridcell][data-col="5"]').click()  # CFA's candle
    page.wait_for_function("() => document.querySelector('#lb-picked').innerText.includes('Run form filled')")
    assert page.locator("#bench-models textarea, #bench-models input").first.input_value() == "cfa"
    assert page.locator("#bench-categories textarea, #bench-categories input").first.input_value() == "candle"
    assert page.locator("#bench-dataset input").input_value() == "visa"

    _choose(page, "result-file", next(str(p) for p in sorted(docs.rglob("results.csv"))))
    page.locator("#result-table [role=columnheader]").first.wait_for()
    assert page.evaluate(GRID_HEADERS, "result-table")[:3] == ["mode", "model", "backbone"]  # not "1 2 3"


def test_a_dropdown_pick_computes_the_leaderboard_once(playwright, monkeypatch):
    """Why ``leaderboard_tab.leaderboard_on_filter`` skips repeats: Gradio 6.31's single-choice Dropdown sends
    ``input`` twice for one picked option. Through the leaderboard's own filter handler the table is computed
    once per pick, and the repeat changes nothing on the page. (The events Gradio sent are printed: when a
    release sends one, the repeat filter can go.)"""
    from iadbe.app import leaderboard_tab
    from test_app import free_port

    computed = []
    monkeypatch.setattr(leaderboard_tab, "leaderboard",
                        lambda dataset, *rest: computed.append(dataset)
                        or (f"drawn {dataset}",) * leaderboard_tab.LEADERBOARD_OUTPUTS)
    with gr.Blocks() as demo:
        dataset = gr.Dropdown(["mvtec", "visa"], value="mvtec", elem_id="pick")
        shown = [gr.Textbox(elem_id=f"out{i}") for i in range(leaderboard_tab.LEADERBOARD_OUTPUTS)]
        events = []

        def count(value, request: gr.Request):
            events.append(value)
            return leaderboard_tab.leaderboard_on_filter(value, "image_AUROC", [], [], request)

        dataset.input(count, dataset, shown)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        _choose(page, "pick", "visa")
        page.wait_for_function("() => document.querySelector('#out0 textarea').value === 'drawn visa'")
        time.sleep(1.0)  # Gradio's repeat comes ~15 ms after the first event
        print(f"Gradio sent the pick {len(events)} time(s)")
        assert events in (["visa"], ["visa", "visa"]) and computed == ["visa"]
    finally:
        browser.close()
        demo.close()


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = 10) -> Path:
    """RGB frames (even sides) as a YUV4MPEG2 file, the format Chromium's fake camera plays in a loop."""
    import cv2

    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def test_live_tab_scores_a_fake_camera_stream(tmp_path_factory, hub_server, playwright, tmp_path):
    """Issue 17: Chromium's fake camera plays a clip of the test parts (``--use-file-for-fake-video-capture``);
    the Live tab streams it through the model and annotated frames, a decision and the frame counter arrive."""
    from PIL import Image

    server = running_app(tmp_path_factory, hub_server)
    parts = sorted((server.data / "defect").glob("*.png"))[:4] + sorted((server.data / "good").glob("*.png"))[:4]
    # 4x4 blocks per pixel: the parts' per-pixel noise survives the camera's 4:2:0 chroma and the stream's encoding
    frames = [np.asarray(Image.open(path).convert("RGB").resize((256, 256), Image.NEAREST)) for path in parts]
    clip = write_y4m([frame for frame in frames for _ in range(5)], tmp_path / "camera.y4m")
    camera_args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-video-capture={clip}"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS + camera_args, headless=True)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        context.grant_permissions(["camera"], origin=server.url.rstrip("/"))
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server.url)
        # The Live tab scores with the Inference tab's settings. The camera path (4:2:0 chroma, the stream's
        # lossy encoding) lifts the fixture model's scores of these noisy good parts to about 0.8 while the
        # square defects stay at 1.0: a threshold of 0.95 tells them apart and shows that the setting carries over.
        threshold = page.get_by_label("number input for threshold (0.5 = calibrated)")
        threshold.fill("0.95")
        threshold.press("Enter")
        page.get_by_role("tab", name="Live", exact=True).click()
        camera = page.locator("#camera")
        camera.locator("video").wait_for(state="attached")
        access = camera.get_by_text("Click to Access Webcam")
        if access.count():
            access.first.click()
        camera.get_by_text("Record", exact=True).click()  # Gradio 6's streaming webcam: start the stream
        page.wait_for_function("() => /[1-9]\\d* frames scored/.test("
                               "(document.querySelector('#live-status textarea') || {}).value || '')",
                               timeout=120_000)
        page.locator("#live-annotated img").wait_for(state="visible")
        decision = page.locator("#live-decision textarea").input_value()
        assert re.fullmatch(r"\d\.\d{3} (normal|anomalous)", decision), decision
        annotated = _picture(page, "#live-annotated")
        assert annotated.shape[0] >= 64 and annotated.std() > 10  # a drawn frame, not a blank
        seen = {decision.split()[1]}
        deadline = time.monotonic() + 12  # the clip loops every 4 s: defect parts, then good ones
        while time.monotonic() < deadline and seen != {"normal", "anomalous"}:
            page.wait_for_timeout(250)
            seen.add(page.locator("#live-decision textarea").input_value().split()[1])
        status = page.locator("#live-status textarea").input_value()
        print(f"live stream: labels seen {sorted(seen)}; {status}")
        assert seen == {"normal", "anomalous"}, f"the clip has good and defective parts, labels seen: {seen}"
        assert int(status.split()[0]) > 3, status  # frames keep arriving
        page.screenshot(path=str(SCREENSHOTS / "live.png"), full_page=True)
    finally:
        browser.close()
