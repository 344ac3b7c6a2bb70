"""YOLO detectors (optional ultralytics): entries, the message without ultralytics, and one real training with
the network off: a YOLO export made by ``iadbe convert`` from real KolektorSDD images trains, stores, exports,
and predicts boxes through both backends, the Inference tab's function and ``gradio_client``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iadbe.errors import ModelUnavailableError
from iadbe.models import all_specs, check_availability, get_spec

try:  # tests/ as a package or as a plain folder on sys.path
    from .test_convert import kolektor_subset
except ImportError:
    from test_convert import kolektor_subset

HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
needs_ultralytics = pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics is not installed "
                                       "(pip install 'iadbe[yolo]'; requirements-dev.txt installs it)")
YOLOS = [spec for spec in all_specs() if spec.boxes]
IMAGE_SIZE = (256, 128)  # KolektorSDD is about 256 x 640 (W x H)

#: Put first on the PYTHONPATH of a child process: every socket it opens to a non-loopback address and every
#: name it resolves other than localhost is refused and written to the log the test reads.
BLOCKER = '''
import os, socket
_log = os.environ["IADBE_TEST_NETWORK_LOG"]
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
def _remote(address):
    host = address[0] if isinstance(address, tuple) else None
    return host is not None and not (str(host).startswith("127.") or host in ("::1", "localhost"))
def _refuse(what):
    with open(_log, "a") as log:
        log.write(f"{os.getpid()} {what}\\n")
    raise OSError(f"network blocked by the test: {what}")
def connect(self, address):
    return _refuse(f"connect {address!r}") if _remote(address) else _connect(self, address)
def connect_ex(self, address):
    return _refuse(f"connect {address!r}") if _remote(address) else _connect_ex(self, address)
def getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost", "::1") and not str(host).startswith("127."):
        _refuse(f"resolve {host!r}")
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


def test_yolo_entries_are_supervised_box_detectors_of_the_study() -> None:
    names = {spec.name for spec in YOLOS}
    assert {"yolov3_tiny", "yolov5n", "yolov6n", "yolov8n", "yolov8m", "yolov9c", "yolov10n"} <= names
    for spec in YOLOS:
        assert spec.supervised and spec.boxes and not spec.segmentation and spec.fit is not None
    assert not any(spec.boxes or spec.supervised for spec in all_specs() if spec.name in ("padim", "patchcore"))
    from iadbe.model_card import build_model_card

    card = str(build_model_card({"model": "yolov8n", "name": "y", "dataset": {"name": "folder"}}))
    assert "Supervised detection" in card and "AGPL-3.0" in card  # a pushed YOLO says what trained it
    assert "AGPL" not in str(build_model_card({"model": "padim", "name": "p", "dataset": {"name": "folder"}}))


def test_importing_iadbe_and_listing_models_never_imports_ultralytics() -> None:
    code = ("import sys; import iadbe.cli; from iadbe.models import list_models, resolve_config; list_models(); "
            "resolve_config('yolov8n', image_size=128); assert 'ultralytics' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_without_ultralytics_yolo_says_how_to_add_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from iadbe.cli import main
    from iadbe.models.yolo import YoloDetector
    from iadbe.training import train

    monkeypatch.setitem(sys.modules, "ultralytics", None)  # as if not installed: find_spec None, import fails
    availability = check_availability(get_spec("yolov8n"))
    assert not availability.runs_here and "pip install 'iadbe[yolo]'" in availability.reason
    assert check_availability(get_spec("padim")).model == "padim"  # the others are listed as before
    with pytest.raises(ModelUnavailableError, match=r"pip install 'iadbe\[yolo\]'"):
        train("yolov8n", "folder", tmp_path / "never-read")
    with pytest.raises(ModelUnavailableError, match=r"ultralytics.*iadbe\[yolo\]"):
        YoloDetector()
    assert main(["train", "--model", "yolov8n", "--dataset", "folder", "--root", str(tmp_path)]) == 2


@needs_ultralytics
def test_every_yolo_yaml_ships_with_ultralytics() -> None:
    from iadbe.models.process_state import import_keeping_process_state

    tasks = import_keeping_process_state("ultralytics.nn.tasks")  # never a bare import: it patches this process
    for spec in YOLOS:
        assert tasks.yaml_model_load(spec.defaults["model_yaml"])["backbone"], spec.name


PROCESS_STATE = """
import json, os, warnings, cv2, numpy as np, torch
from PIL import Image

def state():
    return {"pil_open": repr(Image.open), "torch_save": repr(torch.save), "torch_load": repr(torch.load),
            "cv2_threads": cv2.getNumThreads(), "numpy_print": repr(np.get_printoptions()),
            "torch_print": repr(vars(torch._tensor_str.PRINT_OPTS)), "environ": dict(os.environ),
            "warnings": len(warnings.filters)}

before = state()
{action}
after = state()
print(json.dumps({key: [before[key], after[key]] for key in before if before[key] != after[key]}))
"""


@needs_ultralytics
def test_building_a_yolo_in_this_process_changes_no_process_wide_setting() -> None:
    """Ultralytics' import patches PIL.Image.open, torch.save, OpenCV's threads, print options, environment
    variables and warning filters (a bare import shows it); IADBE's YoloDetector puts every one back (a Space
    serves all visitors from one process). Each in a fresh interpreter: no earlier test's import counts."""
    import json
    import subprocess
    import sys

    def changes(action: str) -> dict:
        code = PROCESS_STATE.replace("{action}", action)
        # without the variables Ultralytics sets, in case an earlier import in this process left them here
        env = {key: value for key, value in os.environ.items()
               if key not in {"NUMEXPR_MAX_THREADS", "TF_CPP_MIN_LOG_LEVEL", "TORCH_CPP_LOG_LEVEL", "KINETO_LOG_LEVEL"}}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             cwd=Path(__file__).resolve().parents[1], env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    bare = changes("import ultralytics.nn.tasks")
    assert {"pil_open", "torch_save", "cv2_threads", "environ"} <= set(bare)  # what is being guarded against
    assert changes("from iadbe.models.yolo import YoloDetector; YoloDetector()") == {}


@needs_ultralytics
@pytest.mark.parametrize("name", ["yolov8n", "yolov10n", "yolo11n"])
def test_a_yolo_graph_gives_the_best_confidence_and_candidates(name: str) -> None:
    """The graph gives (best confidence, candidates x0 y0 x1 y1 conf class); the v10 head (NMS-free) gives its
    one-to-many outputs, NMS in IADBE. (Every entry is built in the slow test below.)"""
    import torch

    from iadbe.graph import build_inference_graph
    from iadbe.models import create_detector, resolve_config

    config = resolve_config(name, image_size=64)
    assert config.mean == (0.0, 0.0, 0.0) and config.std == (1.0, 1.0, 1.0)
    graph = build_inference_graph(create_detector(config, pre_trained=False).model, config)
    with torch.no_grad():
        scores, candidates = graph(torch.rand(2, 3, 64, 64))
    assert scores.shape == (2,) and candidates.shape[0] == 2 and candidates.shape[2] == 6
    assert torch.allclose(scores, candidates[..., 4].amax(dim=1))


@needs_ultralytics
@pytest.mark.slow
def test_every_yolo_builds_from_its_yaml() -> None:
    from iadbe.models import create_detector, resolve_config

    for spec in YOLOS:
        model = create_detector(resolve_config(spec.name, image_size=64), pre_trained=False).model
        assert model.model[-1].nc == 1, spec.name


# --------------------------------------------------------------------------- one real training, network off
@pytest.fixture(scope="module")
def trained_yolo(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """yolov8n trained 2 epochs on a YOLO export that ``iadbe convert`` made from 16 real KolektorSDD images
    (6 defective), with every non-loopback connection and name lookup refused here and in the child."""
    if not HAS_ULTRALYTICS:
        pytest.skip("ultralytics is not installed")
    from iadbe.cli import main
    from iadbe.training import train

    base = tmp_path_factory.mktemp("yolo")
    source = kolektor_subset(base / "kolektor")
    blocker = base / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    log = base / "network.log"
    log.touch()
    exec(compile(BLOCKER.replace('os.environ["IADBE_TEST_NETWORK_LOG"]', repr(str(log))), "blocker", "exec"),
         namespace := {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IADBE_TEST_NETWORK_LOG", str(log))
        patch.setenv("PYTHONPATH", os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
        for name in ("connect", "connect_ex"):
            patch.setattr(socket.socket, name, namespace[name])
        patch.setattr(socket, "getaddrinfo", namespace["getaddrinfo"])
        assert main(["convert", str(source), str(base / "export"), "--to", "yolo"]) == 0
        result = train("yolov8n", "folder", base / "export", image_size=IMAGE_SIZE, max_epochs=2, batch_size=8,
                       out=base / "store" / "yolo-kolektor", seed=0, export=False)
    # OpenVINO's convert_model sends usage telemetry from a forked process (openvino_telemetry), for every
    # detector alike: the export runs after the network check, and is checked by the backend tests below.
    attempts = log.read_text()
    from iadbe.export import export_model_dir

    export_model_dir(result.model_dir)
    return result, base, attempts


@pytest.mark.slow
@pytest.mark.realdata
def test_yolo_trains_offline_on_a_converted_real_export(trained_yolo) -> None:
    result, base, blocked = trained_yolo
    attempts = [line for line in blocked.splitlines() if line]
    # Importing ultralytics here (to build the network) resolves two names once (ultralytics.utils.is_online);
    # it never connects. Its training child, with IADBE's offline environment, must not even resolve a name.
    probe = {f"{os.getpid()} resolve 'one.one.one.one'", f"{os.getpid()} resolve 'dns.google'"}
    assert set(attempts) <= probe, "network use was attempted:\n" + "\n".join(attempts)
    model_dir = result.model_dir
    for name in ("iadbe.json", "weights.safetensors", "openvino/model.xml", "openvino/model.bin"):
        assert (model_dir / name).is_file(), name
    meta = result.meta
    assert meta["model"] == "yolov8n" and meta["epochs_trained"] == 2 and meta["train_defects"] >= 1
    assert meta["detector"]["init_args"]["model_yaml"] == "yolov8n.yaml"
    assert {"image_F1", "image_F1_oracle", "image_AUROC"} <= set(result.metrics)
    assert "pixel_F1" not in result.metrics  # boxes, not maps: image metrics only
    assert meta["postprocess"]["rule"] and meta["calibration"]["validation_scores"]["normal"]


def _same_boxes(first: list, second: list) -> None:
    assert len(first) == len(second)
    for box in first:
        assert any(abs(box.raw_score - other.raw_score) < 1e-4 and
                   max(abs(a - b) for a, b in zip((box.x0, box.y0, box.x1, box.y1),
                                                  (other.x0, other.y0, other.x1, other.y1))) < 0.05
                   for other in second), box


@pytest.mark.slow
@pytest.mark.realdata
def test_torch_and_openvino_give_the_same_boxes_at_batch_1_and_3(trained_yolo) -> None:
    from iadbe.inference import load_model

    result, base, _ = trained_yolo
    images = sorted((base / "export" / "images").glob("*/*.jpg"))[:3]
    torch_model = load_model(result.model_dir, backend="torch", precision="f32")
    openvino_model = load_model(result.model_dir, backend="openvino", precision="f32")  # auto may run bf16
    for batch in (1, 3):
        ours = torch_model.predict(images, batch_size=batch, threshold=0.0)
        theirs = openvino_model.predict(images, batch_size=batch, threshold=0.0)
        for a, b in zip(ours, theirs):
            assert a.boxes, "a trained YOLO keeps some boxes above the confidence floor"
            assert a.score == pytest.approx(b.score, abs=1e-4)
            _same_boxes(list(a.boxes), list(b.boxes))
            height, width = a.image.shape[:2]
            assert all(0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height for box in a.boxes)
            assert np.array_equal(a.mask, a.anomaly_map > 0.0)  # at threshold 0 the mask is every box's union


@pytest.mark.slow
@pytest.mark.realdata
def test_a_stored_yolo_runs_through_the_inference_tab_and_gradio_client(trained_yolo, hub_server,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import Client, handle_file
    from PIL import Image

    try:
        from .test_app import start_app
    except ImportError:
        from test_app import start_app
    from iadbe import constants
    from iadbe.app import inference_tab

    result, base, _ = trained_yolo
    image = sorted((base / "export" / "images").glob("*/*.jpg"))[0]
    from gradio.utils import get_upload_folder

    monkeypatch.setattr(constants, "MODEL_STORE", base / "store")
    uploaded = Path(get_upload_folder()) / f"yolo-{os.getpid()}" / image.name  # where Gradio puts an upload
    uploaded.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image, uploaded)
    original, _, _, boxes_view, score, label, _, details, state = inference_tab.predict(
        str(uploaded), "yolo-kolektor", "torch", 0.0, 0.5)
    assert details["boxes"] and {"x0", "y0", "x1", "y1", "score", "raw_score", "label"} <= set(details["boxes"][0])
    assert details["boxes"][0]["label"] == "defect" and label == "anomalous"
    assert np.abs(np.asarray(Image.open(boxes_view), np.int16) - np.asarray(Image.open(original), np.int16)).max() > 50

    (base / "home").mkdir(exist_ok=True)
    server = start_app(base / "home", base / "store", base / "export", hub_server.url)
    try:
        client = Client(server.url, verbose=False)
        remote = client.predict(handle_file(str(image)), "yolo-kolektor", "auto", 0.0, 0.5, api_name="/predict")
        assert remote[7]["backend"] == "openvino" and remote[5] == "anomalous"
        assert remote[4] == pytest.approx(score, abs=1e-3)
        assert len(remote[7]["boxes"]) == len(details["boxes"]) and remote[7]["boxes"][0]["label"] == "defect"
        _, _, _, _, rerendered = client.predict(1.0, 0.5, api_name="/rerender")
        assert rerendered["boxes"] == []  # above every box: none shown
        import requests

        answer = requests.post(server.url + "api/v1/predict", params={"model": "yolo-kolektor", "threshold": 0.0},
                               data=image.read_bytes(), timeout=120).json()
        assert answer["boxes"] == remote[7]["boxes"] and answer["score"] == pytest.approx(remote[4], abs=1e-6)
    finally:
        server.stop()


@needs_ultralytics
def test_starting_weights_from_a_file_or_the_hub_are_checked_and_transferred(hub_env, tmp_path: Path) -> None:
    """``--set weights=...``: a local file or an hf:// .safetensors (downloaded through iadbe.hub, never a
    pickle from the Hub); the tensors whose names and shapes fit are copied (another class count: not the head's
    class layer)."""
    import torch
    from huggingface_hub import HfApi
    from safetensors.torch import save_file

    from iadbe.errors import SettingsError
    from iadbe.models import create_detector, resolve_config
    from iadbe.models.yolo_fit import _local_weights, _transfer

    donor = create_detector(resolve_config("yolov8n", image_size=64, names=["a", "b", "c"]), pre_trained=False)
    weights = tmp_path / "donor.safetensors"
    save_file({k: v.contiguous() for k, v in donor.model.state_dict().items()}, str(weights))
    repo = hub_env.repo_id("yolo-weights")
    api = HfApi(endpoint=hub_env.endpoint, token=hub_env.token)
    api.create_repo(repo)
    api.upload_file(path_or_fileobj=str(weights), path_in_repo="start/donor.safetensors", repo_id=repo)
    downloaded = Path(_local_weights(f"hf://{repo}/start/donor.safetensors"))
    assert downloaded.read_bytes() == weights.read_bytes()

    with pytest.raises(SettingsError, match="must name a .safetensors"):
        resolve_config("yolov8n", image_size=64, weights=f"hf://{repo}/start/donor.pt")
    with pytest.raises(SettingsError, match="not a .pt or .safetensors file"):
        resolve_config("yolov8n", image_size=64, weights=str(tmp_path / "missing.pt"))
    config = resolve_config("yolov8n", image_size=64, weights=str(downloaded))
    assert config.extra["weights"] == str(downloaded)

    target = create_detector(config, pre_trained=False).model
    copied = _transfer(target, str(downloaded))
    own, given = target.state_dict(), donor.model.state_dict()
    differing = [k for k in own if own[k].shape != given[k].shape]
    assert differing and copied == len(own) - len(differing)  # all but the class layers (3 classes vs 1)
    assert all(torch.equal(own[k], given[k]) for k in own if k not in differing)


class _Stop(Exception):
    pass


def _children_running(marker: str) -> list[int]:
    """Processes whose parent is this one and whose command line holds ``marker`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and marker in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads child processes from /proc")
def test_a_cancelled_yolo_training_stops_its_child(trained_yolo) -> None:
    """The app's Stop button raises from the progress callback: the Ultralytics child must not train on."""
    from iadbe.training import train

    _, base, _ = trained_yolo

    def progress(fraction: float, message: str) -> None:
        if "epoch" in message:
            raise _Stop

    with pytest.raises(_Stop):
        train("yolov8n", "folder", base / "export", image_size=IMAGE_SIZE, max_epochs=50, batch_size=8,
              out=base / "store" / "cancelled", progress=progress, export=False)
    assert _children_running("iadbe.models.yolo_fit") == []
    assert not (base / "store" / "cancelled").exists()
