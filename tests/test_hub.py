"""iadbe.hub end to end against the Hub-compatible test server, with the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from iadbe import hub
from iadbe.errors import DatasetError, IADBEError, ModelFormatError, ModelUnavailableError, SettingsError
from iadbe.hub import (
    ChecksumMismatchError,
    HubError,
    HubRef,
    ModelNotCachedError,
    download_dataset,
    download_model,
    is_cached,
    parse_hub_ref,
    push_model,
    redact,
)
from iadbe.manifest import load_manifest
from iadbe.model_card import build_model_card

try:
    from .hub_server import HUB_ORG, OTHER_TOKEN, refused_endpoint, silent_endpoint
except ImportError:
    from hub_server import HUB_ORG, OTHER_TOKEN, refused_endpoint, silent_endpoint

PROJECT = Path(__file__).resolve().parents[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_model_dir(root: Path, *, dataset: str = "mvtec_ad", category: str = "bottle", openvino: bool = True,
                   pickle: bool = False, seed: int = 0) -> Path:
    """A small but well-formed model directory (real safetensors, fake OpenVINO bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file({"model.memory_bank": rng.standard_normal((8, 4)).astype(np.float32)},
              str(root / "weights.safetensors"))
    files = {"weights.safetensors": sha256((root / "weights.safetensors").read_bytes())}
    if openvino:
        (root / "openvino").mkdir(exist_ok=True)
        (root / "openvino/model.xml").write_bytes(b"<?xml version='1.0'?><net name='padim' version='11'/>\n")
        (root / "openvino/model.bin").write_bytes(bytes(range(256)) * 4)
        for name in ("openvino/model.xml", "openvino/model.bin"):
            files[name] = sha256((root / name).read_bytes())
    if pickle:
        (root / "model.ckpt").write_bytes(b"\x80\x04pickle")
    meta = {
        "schema_version": 1, "name": f"padim-{category}", "model": "padim", "init_args": {"layers": ["layer1"]},
        "backbone": "resnet18", "image_size": [64, 64],
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "postprocess": {"image_threshold": 1.0, "pixel_threshold": 1.0, "image_min": 0.0, "image_max": 2.0,
                        "pixel_min": 0.0, "pixel_max": 2.0},
        "dataset": {"name": dataset, "root": "/data", "category": category, "layout": "mvtec"},
        "validation": "synthetic anomalies", "training_time_s": 12.5, "created": "2025-01-01T00:00:00Z",
        "metrics": {"image_AUROC": 0.99, "pixel_AUROC": 0.97, "pixel_AUPRO": 0.91, "image_F1Score": 0.95,
                    "pixel_AUPR": None},
        "versions": {"iadbe": "0.1.0", "anomalib": "2.7.0"},
        "files": files,
    }
    (root / "iadbe.json").write_text(json.dumps(meta, indent=1))
    return root


@pytest.fixture
def pushed(hub_env, tmp_path):
    """A model pushed to a fresh repo under ``padim/bottle``, recorded in a manifest."""
    model_dir = make_model_dir(tmp_path / "model", pickle=True)
    manifest = tmp_path / "models_manifest.yaml"
    repo_id = hub_env.repo_id("padim")
    result = push_model(model_dir, repo_id, path_in_repo="padim/bottle", manifest_path=manifest)
    return model_dir, manifest, result


def _no_token_anywhere(exc: BaseException, *tokens: str) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)
    for token in tokens:
        assert token not in text
    assert exc.__cause__ is None and exc.__context__ is None


# --------------------------------------------------------------------------- references and redaction
def test_parse_hub_ref_forms():
    assert parse_hub_ref("hf://me/repo") == HubRef("me/repo", "", None, "model")
    assert parse_hub_ref("hf://me/repo/padim/bottle@" + "a" * 40) == HubRef("me/repo", "padim/bottle", "a" * 40)
    assert parse_hub_ref("hf://datasets/me/parts@v1") == HubRef("me/parts", "", "v1", "dataset")
    assert parse_hub_ref("hf://datasets/me/parts/sub@main").path_in_repo == "sub"
    # huggingface_hub's own order, revision before the path
    assert parse_hub_ref("hf://me/repo@main/padim/bottle") == HubRef("me/repo", "padim/bottle", "main")
    assert parse_hub_ref("hf://me/repo@refs/pr/3/sub") == HubRef("me/repo", "sub", "refs/pr/3")
    ref = parse_hub_ref("hf://me/repo/a/b@" + "b" * 40)
    assert ref.pinned and parse_hub_ref(ref.uri) == ref
    for bad in ("me/repo", "hf://me", "hf://me/repo@", "hf://spaces/me/app", "hf://me/repo/../x@main",
                "hf://me/re po", "hf://me/repo@a..b"):
        with pytest.raises(SettingsError):
            parse_hub_ref(bad)


def test_hub_uri_is_the_one_writer_of_what_parse_hub_ref_reads():
    from iadbe.hub import hub_uri

    for ref in (HubRef("me/repo"), HubRef("me/repo", "padim/bottle", "c" * 40), HubRef("me/repo", "", "main"),
                HubRef("me/parts", "sub", "v1", "dataset"), HubRef("me/parts", "", None, "dataset")):
        uri = hub_uri(ref.repo_id, ref.path_in_repo, ref.revision, ref.repo_type)
        assert uri == ref.uri and parse_hub_ref(uri) == ref
    assert hub_uri("me/repo", "", "main") == "hf://me/repo@main"  # no "/@" for a repo's root
    assert hub_uri("me/repo", "/padim/") == "hf://me/repo/padim"


def test_redact_removes_tokens_and_bearer_values():
    text = "401 for Authorization: Bearer sk-secret-123 and hf_abcdefghijklmnopqrstuv, token=sk-secret-123"
    out = redact(text, "sk-secret-123")
    assert "sk-secret-123" not in out and "hf_abcdefghijklmnop" not in out
    assert "Bearer ***" in out
    assert redact("nothing here", None) == "nothing here"


def test_model_card_mvtec_license_metrics_and_snippet(tmp_path):
    meta = json.loads((make_model_dir(tmp_path / "m") / "iadbe.json").read_text())
    card = build_model_card(meta, repo_id="me/models", path_in_repo="padim/bottle", revision="c" * 40)
    assert card.data.license == "cc-by-nc-sa-4.0"
    assert card.data.library_name == "iadbe"
    assert card.data.tags == ["anomaly-detection", "anomalib", "iadbe", "padim"]
    assert {r.metric_name for r in card.data.eval_results} == {"Image AUROC", "Pixel AUROC", "Pixel PRO (AUPRO)",
                                                                "Image F1"}
    text = str(card)
    assert "inherits that license" in text
    assert f'iadbe.load_model("hf://me/models/padim/bottle@{"c" * 40}")' in text
    assert "iadbe predict --model hf://me/models/padim/bottle@" in text
    meta["dataset"]["name"] = "my_parts"
    assert build_model_card(meta).data.license == "other"


def test_model_card_says_how_the_threshold_was_chosen(tmp_path):
    meta = json.loads((make_model_dir(tmp_path / "m") / "iadbe.json").read_text())
    meta["calibration"] = {"rule": "normal-tail/v2", "false_alarm_rate": 0.05, "defect_share": None}
    assert "the image threshold flags 5 % of good parts" in str(build_model_card(meta))
    meta["calibration"].update(false_alarm_rate=0.0312, defect_share=42 / 320)
    text = str(build_model_card(meta))
    assert "the best expected F1 on the real validation defects at a 13.1 % defect share: the image threshold " \
           "flags 3.1 % of good parts" in text


# --------------------------------------------------------------------------- push + download round trip
def test_push_is_one_commit_and_manifest_is_pinned(hub_env, pushed):
    from huggingface_hub import HfApi

    model_dir, manifest_path, result = pushed
    api = HfApi(endpoint=hub_env.endpoint)
    commits = api.list_repo_commits(result.repo_id)
    assert [c.title for c in commits][-1] == "initial commit" and len(commits) == 2
    assert commits[0].commit_id == result.revision
    files = set(api.list_repo_files(result.repo_id, revision=result.revision))
    expected = {f"padim/bottle/{n}" for n in ("iadbe.json", "weights.safetensors", "openvino/model.xml",
                                              "openvino/model.bin", "README.md")}
    assert files == expected | {".gitattributes"}  # the pickle was not uploaded
    first_commit_files = set(hub_env.server.commits(result.repo_id)[0].files)
    assert expected <= first_commit_files

    entry = load_manifest(manifest_path).get(result.manifest_entry.id)
    assert entry.revision == result.revision and entry.path_in_repo == "padim/bottle"
    for name in ("iadbe.json", "weights.safetensors", "openvino/model.xml", "openvino/model.bin"):
        assert entry.files[name] == sha256((model_dir / name).read_bytes())
    assert entry.license == "cc-by-nc-sa-4.0" and entry.metrics["image_AUROC"] == pytest.approx(0.99)
    assert entry.hf_ref == result.hf_ref == f"hf://{result.repo_id}/padim/bottle@{result.revision}"
    assert result.files == entry.files
    assert not any("agent-harnesses" in r.path for r in hub_env.server.requests)  # telemetry off in the fixture
    readme = hub_env.server.files_at(result.repo_id)["padim/bottle/README.md"].decode()
    assert "library_name: iadbe" in readme and "cc-by-nc-sa-4.0" in readme


def test_download_by_manifest_entry_gives_identical_bytes_and_then_uses_the_cache(hub_env, pushed):
    model_dir, manifest_path, result = pushed
    entry = load_manifest(manifest_path).get(result.manifest_entry.id)
    assert not is_cached(entry)
    local = download_model(entry)
    assert local.is_dir() and (local / "iadbe.json").is_file()
    assert str(local).startswith(str(hub_env.cache_dir)) and result.revision in str(local)
    for name in ("iadbe.json", "weights.safetensors", "openvino/model.xml", "openvino/model.bin"):
        assert (local / name).read_bytes() == (model_dir / name).read_bytes()
    assert not list(local.rglob("*.ckpt"))
    assert is_cached(entry)

    hub_env.server.requests.clear()
    assert download_model(entry) == local
    assert hub_env.server.requests == []  # pinned + cached: no network at all


def test_download_by_hf_ref_checks_iadbe_json_checksums(hub_env, pushed):
    _, _, result = pushed
    local = download_model(result.hf_ref)
    assert (local / "weights.safetensors").is_file()
    unpinned = download_model(f"hf://{result.repo_id}/padim/bottle")  # default branch, resolved to a commit
    assert unpinned == local


def test_pickles_in_the_repo_are_never_downloaded(hub_env, pushed):
    _, _, result = pushed
    hub_env.server.seed(result.repo_id, {"padim/bottle/model.ckpt": b"\x80\x04evil",
                                         "padim/bottle/extra.pt": b"\x80\x04evil"}, message="add pickles")
    local = download_model(f"hf://{result.repo_id}/padim/bottle@main")
    snapshot_files = {p.name for p in local.rglob("*")}
    assert "model.ckpt" not in snapshot_files and "extra.pt" not in snapshot_files
    assert (local / "weights.safetensors").is_file()


def test_tampered_server_file_is_refused_and_evicted(hub_env, pushed):
    _, manifest_path, result = pushed
    entry = load_manifest(manifest_path).get(result.manifest_entry.id)
    bad = b"tampered!" * 50
    hub_env.server.tamper(result.repo_id, "padim/bottle/weights.safetensors", bad)
    with pytest.raises(ChecksumMismatchError) as info:
        download_model(entry)
    err = info.value
    assert isinstance(err, ModelFormatError)
    assert err.file == "weights.safetensors" and err.expected == entry.files["weights.safetensors"]
    assert err.actual == sha256(bad)
    assert entry.files["weights.safetensors"] in str(err) and sha256(bad) in str(err)
    # neither the snapshot link nor the blob with the bad bytes is left in the cache
    leftovers = [p for p in hub_env.cache_dir.rglob("*") if p.is_file() and p.read_bytes() == bad]
    assert leftovers == []
    assert not any(p.name == "weights.safetensors" for p in hub_env.cache_dir.rglob("*"))
    assert not is_cached(entry)
    # without a manifest the checksums of iadbe.json catch it too
    with pytest.raises(ChecksumMismatchError):
        download_model(result.hf_ref)


def test_push_without_openvino_and_at_repo_root(hub_env, tmp_path):
    model_dir = make_model_dir(tmp_path / "m", openvino=False, dataset="my_parts")
    result = push_model(model_dir, hub_env.repo_id("root"))
    assert set(result.files) == {"iadbe.json", "weights.safetensors", "README.md"}
    assert result.path_in_repo == "" and result.hf_ref == f"hf://{result.repo_id}@{result.revision}"
    local = download_model(result.hf_ref)
    assert sorted(p.name for p in local.iterdir()) == ["README.md", "iadbe.json", "weights.safetensors"]


def test_push_to_an_org_and_again_to_the_same_repo(hub_env, tmp_path):
    model_dir = make_model_dir(tmp_path / "m")
    repo_id = hub_env.repo_id("shared", owner=HUB_ORG)
    first = push_model(model_dir, repo_id, path_in_repo="a")
    second = push_model(make_model_dir(tmp_path / "m2", seed=1), repo_id, path_in_repo="b")
    assert first.revision != second.revision
    assert len(hub_env.server.commits(repo_id)) == 3


# --------------------------------------------------------------------------- offline and unreachable
OFFLINE_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from iadbe.hub import download_model, ModelNotCachedError
    from iadbe.manifest import load_manifest
    manifest = load_manifest(sys.argv[1])
    out = {}
    t = time.perf_counter()
    out["cached_dir"] = str(download_model(manifest.get(sys.argv[2])))
    out["cached_s"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        download_model(manifest.get(sys.argv[3]))
    except ModelNotCachedError as err:
        out["error"] = str(err)
    out["uncached_s"] = time.perf_counter() - t
    print(json.dumps(out))
""")


def test_offline_mode_in_a_fresh_process(hub_env, pushed, tmp_path):
    _, manifest_path, result = pushed
    cached_id = result.manifest_entry.id
    cached_dir = download_model(load_manifest(manifest_path).get(cached_id))
    other = push_model(make_model_dir(tmp_path / "other", seed=3), hub_env.repo_id("never-downloaded"),
                       manifest_path=manifest_path)
    env = hub_env.subprocess_env(HF_HUB_OFFLINE="1")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(manifest_path), cached_id,
                           other.manifest_entry.id], env=env, cwd=PROJECT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["cached_dir"] == str(cached_dir)
    assert out["cached_s"] < 5 and out["uncached_s"] < 5, out
    assert other.manifest_entry.id in out["error"] and "iadbe models --download" in out["error"]
    assert "offline" in out["error"].lower()
    assert time.perf_counter() - t < 60


def test_offline_flag_in_process(hub_env, pushed, monkeypatch):
    from huggingface_hub import constants as hf_constants

    _, manifest_path, result = pushed
    entry = load_manifest(manifest_path).get(result.manifest_entry.id)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    hub_env.server.requests.clear()
    with pytest.raises(ModelNotCachedError) as info:
        download_model(entry)
    assert isinstance(info.value, ModelUnavailableError) and info.value.model_id == entry.id
    assert hub_env.server.requests == []


def test_refused_connection_falls_back_to_cache_fast(hub_env, pushed):
    _, manifest_path, result = pushed
    entry = load_manifest(manifest_path).get(result.manifest_entry.id)
    local = download_model(f"hf://{result.repo_id}/padim/bottle")  # caches refs/main too
    hub_env.point_to(refused_endpoint())
    t = time.perf_counter()
    assert download_model(entry) == local
    assert download_model(f"hf://{result.repo_id}/padim/bottle") == local  # branch -> cached ref
    with pytest.raises(ModelNotCachedError) as info:
        download_model(f"hf://{hub_env.repo_id('absent')}/x@main")
    assert time.perf_counter() - t < 5
    assert "cannot be reached" in str(info.value)


def test_hanging_server_does_not_stall(hub_env, pushed):
    _, _, result = pushed
    local = download_model(f"hf://{result.repo_id}/padim/bottle")
    with silent_endpoint() as url:
        hub_env.point_to(url)
        t = time.perf_counter()
        assert download_model(f"hf://{result.repo_id}/padim/bottle", timeout=1) == local
        with pytest.raises(ModelNotCachedError):
            download_model(f"hf://{hub_env.repo_id('absent')}/x", timeout=1)
        assert time.perf_counter() - t < 5


# --------------------------------------------------------------------------- auth and token hygiene
def test_private_repo_needs_the_token(hub_env, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    result = push_model(make_model_dir(tmp_path / "m"), hub_env.repo_id("private"), private=True,
                        path_in_repo="p", manifest_path=tmp_path / "manifest.yaml")
    entry = result.manifest_entry
    hub_env.anonymous()
    with pytest.raises(HubError) as info:
        download_model(entry, cache_dir=tmp_path / "anon-cache")
    message = str(info.value)
    assert "not found or private" in message and "HF_TOKEN" in message and info.value.status == 401
    _no_token_anywhere(info.value, hub_env.token)

    local = download_model(entry, token=hub_env.token, cache_dir=tmp_path / "token-cache")
    assert (local / "weights.safetensors").is_file()

    # a valid token of another account: 404, and the server even echoes the token into its error message
    hub_env.server.echo_auth_in_errors = True
    with pytest.raises(HubError) as info:
        download_model(entry, token=OTHER_TOKEN, cache_dir=tmp_path / "other-cache")
    assert "not found or private" in str(info.value) and info.value.status == 404
    assert "***" in str(info.value)  # the echoed header was there, and redacted
    _no_token_anywhere(info.value, OTHER_TOKEN, hub_env.token)
    captured = capsys.readouterr()
    for token in (OTHER_TOKEN, hub_env.token):
        assert token not in caplog.text and token not in captured.out and token not in captured.err


def test_invalid_planted_token_is_reported_without_leaking(hub_env, tmp_path, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    planted = "hf_PLANTEDsecretTOKEN0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", planted)
    hub_env.server.echo_auth_in_errors = True
    with pytest.raises(HubError) as info:
        push_model(make_model_dir(tmp_path / "m"), hub_env.repo_id("x"))
    assert "token missing or invalid" in str(info.value) and info.value.status == 401
    assert "Bearer ***" in str(info.value)  # the server echoed it; we redacted it
    _no_token_anywhere(info.value, planted)
    with pytest.raises(HubError) as info:
        download_model(f"hf://{hub_env.repo_id('y')}/p@main")
    _no_token_anywhere(info.value, planted)
    captured = capsys.readouterr()
    assert planted not in caplog.text and planted not in captured.out + captured.err


def test_push_errors_are_clear(hub_env, tmp_path):
    model_dir = make_model_dir(tmp_path / "m")
    (model_dir / "weights.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="weights.safetensors missing"):
        push_model(model_dir, hub_env.repo_id("x"))
    model_dir = make_model_dir(tmp_path / "m2")
    hub_env.anonymous()
    with pytest.raises(HubError, match="needs a token"):
        push_model(model_dir, hub_env.repo_id("x"))
    with pytest.raises(SettingsError):
        push_model(model_dir, "no-owner", token=hub_env.token)
    # someone else's namespace
    with pytest.raises(HubError) as info:
        push_model(model_dir, "someone-else/theirs", token=hub_env.token)
    assert info.value.status == 403 and isinstance(info.value, IADBEError)


def test_interrupted_push_leaves_the_manifest_unchanged(hub_env, pushed, tmp_path):
    _, manifest_path, result = pushed
    before = manifest_path.read_bytes()
    hub_env.server.fail_next_commit(500)
    with pytest.raises(HubError) as info:
        push_model(make_model_dir(tmp_path / "new", seed=5), result.repo_id, path_in_repo="padim/cable",
                   manifest_path=manifest_path)
    assert info.value.status == 500
    assert manifest_path.read_bytes() == before
    assert len(hub_env.server.commits(result.repo_id)) == 2  # initial + the first push only
    assert not [p for p in manifest_path.parent.iterdir() if p.name.endswith(".tmp")]
    # the next push works and adds exactly one entry
    again = push_model(make_model_dir(tmp_path / "new2", seed=5), result.repo_id, path_in_repo="padim/cable",
                       manifest_path=manifest_path)
    assert len(load_manifest(manifest_path).models) == 2
    assert load_manifest(manifest_path).get(again.manifest_entry.id).revision == again.revision


# --------------------------------------------------------------------------- datasets
def test_download_dataset(hub_env):
    import cv2

    def png(value: int) -> bytes:
        return cv2.imencode(".png", np.full((16, 16, 3), value, np.uint8))[1].tobytes()

    repo_id = hub_env.repo_id("parts")
    files = {f"good/{i:03d}.png": png(10 + i) for i in range(4)}
    files |= {f"defect/{i:03d}.png": png(200 + i) for i in range(2)}
    files |= {"masks/000.png": png(255), "README.md": b"# parts\n", "loader.py": b"import os\n",
              "cache.pkl": b"\x80\x04evil"}
    commit = hub_env.server.seed(repo_id, files, repo_type="dataset")
    folder = download_dataset(f"hf://datasets/{repo_id}")
    assert commit in str(folder)
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {n for n in files if n.endswith((".png", ".md"))}
    assert (folder / "good/000.png").read_bytes() == files["good/000.png"]
    from iadbe.data.layouts import detect_layout

    assert detect_layout(folder) == "good_defect"
    # pinned + cached: no network; offline: the cache still serves it
    hub_env.server.requests.clear()
    assert download_dataset(f"hf://datasets/{repo_id}@{commit}") == folder
    assert hub_env.server.requests == []
    hub_env.point_to(refused_endpoint())
    assert download_dataset(f"hf://datasets/{repo_id}") == folder
    with pytest.raises(DatasetError):
        download_dataset(f"hf://{repo_id}")  # a model reference


def test_download_dataset_private_and_subfolder(hub_env):
    repo_id = hub_env.repo_id("private-parts")
    hub_env.server.seed(repo_id, {"bottle/good/0.png": b"\x89PNG fake", "other/x.png": b"\x89PNG"},
                        repo_type="dataset", private=True)
    folder = download_dataset(f"hf://datasets/{repo_id}/bottle@main")
    assert folder.name == "bottle" and (folder / "good/0.png").is_file()
    assert not (folder.parent / "other").exists()
    hub_env.anonymous()
    with pytest.raises(HubError, match="not found or private"):
        download_dataset(f"hf://datasets/{repo_id}/bottle@main", cache_dir=hub_env.hf_home / "anon")


def test_download_dataset_without_the_servers_token(hub_env):
    """``token=False`` (the app downloading for a visitor): HF_TOKEN is set but not sent, so a private dataset
    is refused, even when the server's own earlier download left it in the cache."""
    repo_id = hub_env.repo_id("operators-private-parts")
    hub_env.server.seed(repo_id, {"good/0.png": b"\x89PNG fake"}, repo_type="dataset", private=True)
    assert (download_dataset(f"hf://datasets/{repo_id}") / "good/0.png").is_file()  # with HF_TOKEN
    hub_env.server.requests.clear()
    with pytest.raises(HubError, match="not found or private"):
        download_dataset(f"hf://datasets/{repo_id}", token=False)
    assert hub_env.server.requests and not any(r.authenticated for r in hub_env.server.requests)
    public = hub_env.repo_id("public-parts")
    hub_env.server.seed(public, {"good/0.png": b"\x89PNG fake"}, repo_type="dataset")
    assert (download_dataset(f"hf://datasets/{public}", token=False) / "good/0.png").is_file()


def test_hub_module_stays_light():
    """Importing iadbe.hub must not import torch, anomalib or huggingface_hub's heavy parts eagerly."""
    code = "import sys, iadbe.hub; print(any(m in sys.modules for m in ('torch', 'anomalib')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    assert hub.PROBE_TIMEOUT_S <= 5
