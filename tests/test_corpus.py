"""Every case of the hostile-input corpus (``tests/corpus.py``) through the library, the CLI and the running app.

Each case must end as its manifest says: accepted, or rejected with a message matching its pattern. A crash
(an exception that is not one of IADBE's typed errors, a traceback from the CLI, the app's "Unexpected error"
boundary, or the app no longer answering) fails the test whatever the message. A summary is printed:
inputs tried, accepted, rejected with a clear message, crashes, wrong outcomes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

try:
    from . import corpus
    from .test_app import FIXTURE_MODEL, PROJECT, SCORE_TOL, library_prediction, running_app
except ImportError:
    import corpus
    from test_app import FIXTURE_MODEL, PROJECT, SCORE_TOL, library_prediction, running_app

from iadbe.errors import IADBEError

ACCEPTED = corpus.ACCEPTED


# --------------------------------------------------------------------------- bookkeeping
@dataclass
class Tally:
    """Outcomes of one channel (library, CLI, app): counts and the cases that went wrong."""

    channel: str
    counts: Counter = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)

    def record(self, case: corpus.Case, outcome: str, message: str, expect: str | None = None) -> None:
        """``outcome``: ``accepted``, ``rejected`` (a typed, user-facing error) or ``crash``."""
        expect = expect or case.expect
        self.counts["tried"] += 1
        self.counts[outcome] += 1
        if outcome == "crash":
            self.wrong.append(f"CRASH {case.kind}/{case.name}: {message[:400]}")
        elif (outcome == "accepted") != (expect == ACCEPTED):
            self.wrong.append(f"{case.kind}/{case.name}: expected {expect!r}, got {outcome}: {message[:300]}")
        elif outcome == "rejected" and not re.search(expect, message, re.IGNORECASE | re.DOTALL):
            self.wrong.append(f"{case.kind}/{case.name}: message does not match {expect!r}: {message[:300]}")
        elif outcome == "rejected":
            self.counts["clear message"] += 1

    def summary(self) -> str:
        c = self.counts
        return (f"corpus via {self.channel}: {c['tried']} inputs tried, {c['accepted']} accepted, "
                f"{c['rejected']} rejected ({c['clear message']} with the expected message), {c['crash']} crashes, "
                f"{len(self.wrong)} wrong")

    def check(self, capsys: pytest.CaptureFixture[str]) -> None:
        with capsys.disabled():
            print(f"\n{self.summary()}")
            for line in self.wrong:
                print("  " + line)
        assert self.counts["crash"] == 0 and not self.wrong, "\n".join(self.wrong)


def library_outcome(tally: Tally, case: corpus.Case, run: Callable[[], Any]) -> Any:
    try:
        result = run()
    except IADBEError as error:
        tally.record(case, "rejected", str(error))
        return None
    except Exception as error:  # noqa: BLE001 - counted as a crash
        tally.record(case, "crash", f"{type(error).__name__}: {error}")
        return None
    tally.record(case, "accepted", str(result)[:200])
    return result


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, hub_server):
    return running_app(tmp_path_factory, hub_server)


@pytest.fixture(scope="module")
def fixture_model(app) -> Path:
    return app.store / FIXTURE_MODEL


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, fixture_model: Path) -> list[corpus.Case]:
    return corpus.write_corpus(tmp_path_factory.mktemp("corpus"), fixture_model)


def of_kind(cases: list[corpus.Case], *kinds: str) -> list[corpus.Case]:
    return [case for case in cases if case.kind in kinds]


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private IADBE_HOME (zip extractions, synthetic validation images) for in-process runs."""
    from iadbe import constants

    monkeypatch.setattr(constants, "IADBE_HOME", tmp_path / "home")
    monkeypatch.setattr(constants, "MODEL_STORE", tmp_path / "home" / "models")
    return tmp_path / "home"


# --------------------------------------------------------------------------- library
def run_setting(case: corpus.Case, data: Path) -> Any:
    from iadbe.inference.predictor import check_threshold
    from iadbe.models import resolve_config
    from iadbe.training import train

    setting, value = case.extra["setting"], case.value
    if setting == "threshold":
        return check_threshold(value)
    if setting == "image_size":
        return resolve_config("padim", "tf_efficientnet_lite0", value).image_size
    if setting == "max_epochs":
        return resolve_config("padim", "tf_efficientnet_lite0", 64, value).max_epochs
    if setting == "max_train_images":  # checked before the dataset is read
        return train("padim", "folder", data, image_size=64, max_train_images=value)
    raise AssertionError(setting)


def test_corpus_through_the_library(cases, fixture_model, app, home, capsys):
    from iadbe.data import load_dataset
    from iadbe.inference import load_model
    from iadbe.images import load_image
    from iadbe.manifest import load_manifest
    from iadbe.models import all_specs

    tally = Tally("library")
    model = load_model(fixture_model, backend="torch")
    known = [spec.name for spec in all_specs()]
    for case in cases:
        if case.kind == "image":
            rgb = library_outcome(tally, case, lambda: load_image(case.path))
            if rgb is not None:
                assert rgb.shape == (*case.shape, 3) and rgb.dtype.name == "uint8", case.name
                score = model.predict(case.path)[0].score
                assert math.isfinite(score), case.name
                # the model's own decode path must agree with load_image (EXIF rotation, first frame, ...)
                assert model.predict(rgb)[0].score == pytest.approx(score, abs=1e-6), case.name
        elif case.kind == "zip":
            splits = library_outcome(tally, case, lambda: load_dataset("folder", case.path))
            if splits is not None and case.name == "mixed_image_sizes":
                assert re.search(r"size", splits.report(), re.IGNORECASE), splits.report()
        elif case.kind == "model":
            library_outcome(tally, case, lambda: load_model(case.path, backend=case.extra["backend"])
                            .predict(app.data / "good" / "000.png")[0].score)
        elif case.kind == "manifest":
            library_outcome(tally, case, lambda: load_manifest(case.path, known_models=known).ids)
        elif case.kind == "setting":
            library_outcome(tally, case, lambda: run_setting(case, app.data))
    tally.check(capsys)
    assert tally.counts["tried"] == len(cases)


# --------------------------------------------------------------------------- CLI (in process)
def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from iadbe.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def cli_outcome(tally: Tally, case: corpus.Case, argv: list[str], capsys, expect: str | None = None) -> str:
    try:
        code, out, err = cli(argv, capsys)
    except Exception as error:  # noqa: BLE001 - main() let an exception through: a traceback for the user
        tally.record(case, "crash", f"{type(error).__name__}: {error}", expect)
        return ""
    message = re.search(r"^error: .*", err, re.MULTILINE | re.DOTALL)
    if code == 0:
        tally.record(case, "accepted", out[-200:], expect)
    elif code == 2 and message and "Traceback" not in err:
        tally.record(case, "rejected", message.group(0), expect)
    else:
        tally.record(case, "crash", f"exit {code}: {err[-400:]}", expect)
    return err


def test_corpus_through_the_cli(cases, fixture_model, app, home, tmp_path, capsys, monkeypatch):
    from iadbe import constants

    tally = Tally("CLI")
    images = of_kind(cases, "image")
    out = tmp_path / "predictions"
    code, _, err = cli(["predict", "--model", str(fixture_model), "--backend", "torch", "--out", str(out),
                        *[str(case.path) for case in images]], capsys)
    assert code == 0, err
    rows = _read_csv(out / "predictions.csv")  # an unreadable file has a row with its error and no files
    predicted = {Path(row["file"]).stem for row in rows if not row.get("error")}
    skipped = [line for line in err.splitlines() if line.startswith("skipped: ")]
    for case in images:
        mine = [line for line in skipped if f"{case.path.name}:" in line]
        listed = [row for row in rows if Path(row["file"]).stem == case.path.stem and row.get("error")]
        assert bool(mine) == bool(listed), (case.name, mine, listed)  # stderr and the CSV say the same
        if case.path.stem in predicted:
            tally.record(case, "accepted", "predicted")
        elif mine:
            tally.record(case, "rejected", mine[0])
        else:
            tally.record(case, "crash", f"neither predicted nor skipped with a message: {err[-300:]}")

    for case in of_kind(cases, "zip"):
        if case.accepted:
            continue  # an accepted zip would train here; the library and the app's /inspect cover them
        cli_outcome(tally, case, ["train", "--model", "padim", "--dataset", "folder", "--root", str(case.path),
                                  "--image-size", "64", "--out", str(tmp_path / "models" / case.name)], capsys)
    image = str(app.data / "good" / "000.png")
    for case in of_kind(cases, "model"):
        cli_outcome(tally, case, ["predict", "--model", str(case.path), "--backend", case.extra["backend"],
                                  "--out", str(tmp_path / "p" / case.name), image], capsys)
    for case in of_kind(cases, "manifest"):
        monkeypatch.setattr(constants, "MANIFEST_PATH", case.path)
        cli_outcome(tally, case, ["models", "--json"], capsys)
    monkeypatch.undo()
    for case in of_kind(cases, "setting"):
        setting, value = case.extra["setting"], case.value
        if setting == "threshold":
            argv = ["predict", "--model", str(fixture_model), "--threshold", str(value), "--out",
                    str(tmp_path / "t" / case.name), image]
        elif case.accepted:
            continue  # an accepted training setting would train; the library covers it
        else:
            flag = "--" + setting.replace("_", "-")
            argv = ["train", "--model", "padim", "--dataset", "folder", "--root", str(app.data),
                    "--out", str(tmp_path / "models" / case.name), flag, str(value)]
            if setting != "image_size":
                argv += ["--image-size", "64"]
        cli_outcome(tally, case, argv, capsys)
    tally.check(capsys)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def _read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow  # a second interpreter importing torch and OpenVINO; the in-process CLI test covers the cases
def test_cli_process_reports_bad_input_without_a_traceback(cases, fixture_model, app, tmp_path):
    """The real entry point (``python -m iadbe``): exit codes and plain messages, no Python traceback."""
    env_home = {"IADBE_HOME": str(tmp_path / "home")}
    bad = [case for case in of_kind(cases, "image") if not case.accepted]
    good = [case for case in of_kind(cases, "image") if case.accepted][:2]
    run = _run_cli(["predict", "--model", str(fixture_model), "--out", str(tmp_path / "p"),
                    *[str(c.path) for c in bad + good]], env_home)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.count("skipped: ") == len(bad)


def _run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "iadbe", *argv], cwd=PROJECT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


# --------------------------------------------------------------------------- app (gradio_client)
def app_outcome(tally: Tally, case: corpus.Case, call: Callable[[], Any], expect: str | None = None) -> Any:
    from gradio_client.exceptions import AppError

    try:
        result = call()
    except AppError as error:
        message = str(error)
        if "Unexpected error" in message:
            tally.record(case, "crash", message, expect)
        else:
            tally.record(case, "rejected", message, expect)
        return None
    except Exception as error:  # noqa: BLE001 - the client got no answer: the server broke
        tally.record(case, "crash", f"{type(error).__name__}: {error}", expect)
        return None
    tally.record(case, "accepted", str(result)[:200], expect)
    return result


def test_corpus_through_the_app(cases, app, capsys):
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False)
    tally = Tally("app (gradio_client)")
    for case in of_kind(cases, "image"):
        result = app_outcome(tally, case, lambda: client.predict(
            handle_file(str(case.path)), FIXTURE_MODEL, "auto", 0.5, 0.5, api_name="/predict"))
        if result is not None:
            expected = library_prediction(app.store / FIXTURE_MODEL, case.path, result[7]["backend"])
            assert result[4] == pytest.approx(expected.score, abs=SCORE_TOL), case.name  # the library's score
            assert list(result[7]["image_size"]) == list(case.shape), case.name

    for case in of_kind(cases, "zip"):
        report = app_outcome(tally, case, lambda: client.predict(handle_file(str(case.path)), "", "",
                                                                 api_name="/inspect"))
        if report is not None:
            assert "good_defect" in report, report

    installed = _install_model_cases(app.store, of_kind(cases, "model"))
    try:
        image = str(app.data / "good" / "000.png")
        for case, model_id in installed:
            # broken configs are not listed at all: the app names them unknown, which is the clear answer too
            expect = case.expect if case.accepted else f"{case.expect}|Unknown model"
            app_outcome(tally, case, lambda: client.predict(handle_file(image), model_id, case.extra["backend"],
                                                            0.5, 0.5, api_name="/predict"), expect)
    finally:
        for _, model_id in installed:
            shutil.rmtree(app.store / model_id, ignore_errors=True)

    zip_case = next(case for case in cases if case.name == "valid_parts")
    for case in of_kind(cases, "setting"):
        setting, value = case.extra["setting"], case.value
        if setting == "threshold":
            sent = str(value) if isinstance(value, float) and math.isnan(value) else value  # JSON has no NaN
            app_outcome(tally, case, lambda: client.predict(handle_file(image), FIXTURE_MODEL, "auto", sent, 0.5,
                                                            api_name="/predict"))
            continue
        if case.accepted:
            continue  # an accepted setting would train (tests/test_app.py trains at 64 px)
        args = {"image_size": 64, "max_epochs": 0, "max_train_images": 0, setting: value}
        # the image-size slider (64..512) refuses out-of-range values itself, with its own clear message
        expect = case.expect + (r"|Value -?\d+ is (less|greater) than (minimum|maximum) value"
                                if setting == "image_size" else "")
        app_outcome(tally, case, expect=expect, call=lambda: client.predict(
            handle_file(str(zip_case.path)), "", "", "padim", "tf_efficientnet_lite0", args["image_size"],
            args["max_epochs"], args["max_train_images"], f"corpus-{case.name}", api_name="/train"))
    tally.check(capsys)

    # still serving, and nothing of the refused trainings reached the store
    assert app.process.poll() is None
    score = client.predict(handle_file(image), FIXTURE_MODEL, "auto", 0.5, 0.5, api_name="/predict")[4]
    assert score == pytest.approx(library_prediction(app.store / FIXTURE_MODEL, Path(image)).score, abs=SCORE_TOL)
    assert not [p.name for p in app.store.iterdir() if p.name.startswith(("corpus-", ".partial"))]


# --------------------------------------------------------------------------- REST routes
def rest_outcome(tally: Tally, case: corpus.Case, response: Any, expect: str | None = None) -> Any:
    """A 200 is accepted; a 4xx with our JSON error is a rejection; anything else (5xx, no JSON) is a crash."""
    try:
        body = response.json()
    except ValueError:
        tally.record(case, "crash", f"HTTP {response.status_code}, not JSON: {response.text[:200]}", expect)
        return None
    if response.status_code == 200:
        tally.record(case, "accepted", str(body)[:200], expect)
        return body
    if 400 <= response.status_code < 500 and "error" in body:
        tally.record(case, "rejected", body["error"]["message"], expect)
    else:
        tally.record(case, "crash", f"HTTP {response.status_code}: {body}", expect)
    return None


def test_corpus_through_the_rest_routes(cases, app, capsys):
    import requests

    predict = app.url.rstrip("/") + "/api/v1/predict"
    tally = Tally("REST /api/v1/predict")
    with requests.Session() as http:
        for case in of_kind(cases, "image"):
            body = rest_outcome(tally, case, http.post(predict, params={"model": FIXTURE_MODEL, "name": case.path.name},
                                                       data=case.path.read_bytes()))
            if body is not None:
                expected = library_prediction(app.store / FIXTURE_MODEL, case.path, body["backend"])
                assert body["score"] == pytest.approx(expected.score, abs=SCORE_TOL), case.name
                assert body["image_size"] == list(case.shape), case.name
        image = (app.data / "good" / "000.png").read_bytes()
        installed = _install_model_cases(app.store, of_kind(cases, "model"))
        try:
            for case, model_id in installed:
                expect = case.expect if case.accepted else f"{case.expect}|Unknown model"
                rest_outcome(tally, case, http.post(predict, data=image, params={
                    "model": model_id, "backend": case.extra["backend"]}), expect)
        finally:
            for _, model_id in installed:
                shutil.rmtree(app.store / model_id, ignore_errors=True)
        for case in of_kind(cases, "setting"):
            if case.extra["setting"] == "threshold":
                rest_outcome(tally, case, http.post(predict, data=image, params={
                    "model": FIXTURE_MODEL, "threshold": str(case.value)}))
        tally.check(capsys)
        assert app.process.poll() is None
        assert http.post(predict, params={"model": FIXTURE_MODEL}, data=image).status_code == 200


def _install_model_cases(store: Path, cases: list[corpus.Case]) -> list[tuple[corpus.Case, str]]:
    """Copy each broken model into the app's store as ``corpus-<name>`` (files become folders of pickles)."""
    installed = []
    for case in cases:
        model_id = f"corpus-{case.name}".replace("_", "-")
        target = store / model_id
        if case.path.is_dir():
            shutil.copytree(case.path, target)
        else:
            target.mkdir()
            shutil.copy(case.path, target / case.path.name)
        if (target / "iadbe.json").is_file():  # the app lists the model under its folder name
            try:
                meta = json.loads((target / "iadbe.json").read_text())
                meta["name"] = model_id
                (target / "iadbe.json").write_text(json.dumps(meta))
            except ValueError:
                pass
        installed.append((case, model_id))
    return installed


# --------------------------------------------------------------------------- manifest checksum against the Hub
def test_manifest_with_a_wrong_checksum_is_refused_everywhere(hub_env, fixture_model, home, tmp_path, capsys,
                                                              monkeypatch):
    """A manifest entry whose sha256 does not match the pushed file: load_model and the CLI refuse the file
    (and evict it from the cache), never load it."""
    from iadbe import constants
    from iadbe.hub import ChecksumMismatchError, push_model
    from iadbe.inference import load_model
    from iadbe.manifest import Manifest, save_manifest

    manifest = tmp_path / "manifest.yaml"
    result = push_model(fixture_model, hub_env.repo_id("corpus-checksum"), path_in_repo="padim/parts",
                        manifest_path=manifest)
    entry = result.manifest_entry.model_copy(update={
        "files": {**result.manifest_entry.files, "weights.safetensors": "0" * 64}})
    save_manifest(manifest, Manifest(models=[entry]))
    monkeypatch.setattr(constants, "MANIFEST_PATH", manifest)
    with pytest.raises(ChecksumMismatchError, match="Checksum mismatch for weights.safetensors"):
        load_model(entry.id)
    code, _, err = cli(["models", "--download", entry.id], capsys)
    assert code == 2 and "Checksum mismatch for weights.safetensors" in err and "deleted from the cache" in err


#: The inputs issue 8 lists; the corpus must keep a case for each.
REQUIRED = {
    "image": {"not_an_image", "truncated_png", "truncated_jpeg", "zero_bytes", "one_by_one", "bomb_20000x20000",
              "gray_16bit_png", "cmyk_jpeg", "palette_png", "animated_gif", "exif_rotated_jpeg"},
    "zip": {"path_traversal", "absolute_path", "symlink_member", "ratio_bomb", "total_size_bomb", "too_many_files",
            "nested_zip", "no_normal_images", "only_one_image", "masks_do_not_match_names",
            "masks_do_not_match_size", "mixed_image_sizes"},
    "model": {"pickle_ckpt_file", "weights_do_not_fit", "truncated_safetensors"},
    "manifest": {"manifest_unknown_model", "manifest_bad_checksum_format"},
    "setting": {"image_size_negative", "image_size_huge", "epochs_negative", "epochs_huge", "threshold_negative",
                "threshold_above_one"},
}


def test_corpus_manifest_lists_every_required_case(cases, tmp_path):
    rows = json.loads(corpus.write_manifest(cases, tmp_path / "manifest.json").read_text())
    by_kind: dict[str, set[str]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], set()).add(row["name"])
        assert row["expect"] == ACCEPTED or re.compile(row["expect"])
        assert row["file"] is None or Path(row["file"]).exists()
    for kind, names in REQUIRED.items():
        assert names <= by_kind.get(kind, set()), names - by_kind.get(kind, set())
