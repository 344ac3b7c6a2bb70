"""models_manifest.yaml: schema, every problem reported with its line, atomic updates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iadbe import manifest as manifest_mod
from iadbe.errors import IADBEError
from iadbe.manifest import (
    Manifest,
    ManifestEntry,
    ManifestError,
    load_manifest,
    parse_manifest,
    save_manifest,
    upsert_entry,
)

REV = "0123456789abcdef0123456789abcdef01234567"
SHA_A = "a" * 64
SHA_B = "b" * 64


def entry_yaml(entry_id: str, *, indent: str = "  ", **overrides: str) -> str:
    fields = {
        "id": entry_id, "display_name": f"PaDiM {entry_id}", "model": "padim", "backbone": "resnet18",
        "dataset": "mvtec_ad", "category": "bottle", "repo_id": "iadbe/padim-mvtec", "path_in_repo": "bottle",
        "revision": REV, "files": f"{{iadbe.json: {SHA_A}, weights.safetensors: {SHA_B}}}",
        "image_size": "[256, 256]", "metrics": "{image_AUROC: 0.99, pixel_AUROC: 0.97}",
        "license": "cc-by-nc-sa-4.0",
    }
    fields.update(overrides)
    lines = [f"{k}: {v}" for k, v in fields.items() if v is not None]
    return f"{indent}- " + f"\n{indent}  ".join(lines) + "\n"


def make_entry(entry_id: str = "padim-bottle", **overrides) -> ManifestEntry:
    data = dict(id=entry_id, display_name="PaDiM bottle", model="padim", backbone="resnet18", dataset="mvtec_ad",
                category="bottle", repo_id="iadbe/padim-mvtec", path_in_repo="bottle", revision=REV,
                files={"iadbe.json": SHA_A, "weights.safetensors": SHA_B}, image_size=[256, 256],
                metrics={"image_AUROC": 0.99}, license="cc-by-nc-sa-4.0")
    data.update(overrides)
    return ManifestEntry.model_validate(data)


def test_valid_manifest_loads(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("# published models\nmodels:\n" + entry_yaml("padim-bottle") + entry_yaml("padim-cable"))
    manifest = load_manifest(path)
    assert manifest.ids == ["padim-bottle", "padim-cable"]
    entry = manifest.get("padim-cable")
    assert entry.repo_type == "model" and entry.image_size == (256, 256) and entry.description is None
    assert entry.hf_ref == f"hf://iadbe/padim-mvtec/bottle@{REV}"
    with pytest.raises(KeyError, match="padim-bottle"):
        manifest.get("nope")


def test_empty_manifest_is_valid(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("# nothing yet\n")
    assert load_manifest(path).models == []
    path.write_text("models:\n")
    assert load_manifest(path).models == []


def test_every_bad_entry_is_reported_with_its_line(tmp_path):
    text = (
        "models:\n"
        + entry_yaml("good-one")
        + entry_yaml("bad-revision", revision="main")
        + entry_yaml("good-two")
        + entry_yaml("bad-files", files=f"{{iadbe.json: {SHA_A}, model.ckpt: {SHA_B}}}")
    )
    path = tmp_path / "m.yaml"
    path.write_text(text)
    lines = text.splitlines()
    revision_line = next(i for i, line in enumerate(lines, 1) if "revision: main" in line)
    files_line = next(i for i, line in enumerate(lines, 1) if "model.ckpt" in line)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    err = info.value
    assert isinstance(err, IADBEError) and isinstance(err, ValueError)
    by_id = {}
    for problem in err.problems:
        by_id.setdefault(problem.entry_id, []).append(problem)
    assert set(by_id) == {"bad-revision", "bad-files"}
    assert by_id["bad-revision"][0].line == revision_line and by_id["bad-revision"][0].index == 1
    assert all(p.line == files_line for p in by_id["bad-files"])
    message = str(err)
    assert f"line {revision_line}" in message and f"line {files_line}" in message
    assert "40-hex commit" in message and "model.ckpt" in message and "weights.safetensors" in message


def test_duplicate_ids_and_unknown_models(tmp_path):
    text = "models:\n" + entry_yaml("same") + entry_yaml("same") + entry_yaml("weird", model="nonexistent")
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert [p.entry_id for p in info.value.problems] == ["same"]
    assert "duplicate id 'same' (first at line 2)" in str(info.value)
    with pytest.raises(ManifestError) as info:
        load_manifest(path, known_models={"padim", "patchcore"})
    assert {p.entry_id for p in info.value.problems} == {"same", "weird"}
    assert "'nonexistent' is not a registered detector" in str(info.value)


def test_missing_field_unknown_field_and_bad_values(tmp_path):
    text = "models:\n" + entry_yaml("a", license=None, colour="red") + entry_yaml(
        "B_bad id", repo_id="no-owner", image_size="[0, 10]", path_in_repo="../up",
        files=f"{{iadbe.json: {SHA_A}, weights.safetensors: {SHA_B}, model.bin: {SHA_A}}}")
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    for expected in ("license: Field required", "colour: Extra inputs are not permitted", "must be a slug",
                     "must be OWNER/NAME", "two positive integers", "path_in_repo", "only under openvino/"):
        assert expected in message, expected


def test_invalid_yaml_reports_the_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("models:\n  - id: a\n    files: {iadbe.json: x\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.problems[0].line is not None and "not valid YAML" in str(info.value)
    with pytest.raises(ManifestError, match="file not found"):
        load_manifest(tmp_path / "absent.yaml")
    path.write_text("- just a list\n")
    with pytest.raises(ManifestError, match="'models:' list"):
        load_manifest(path)


def test_upsert_keeps_other_entries_and_the_header(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("# Models offered by the app.\n# Edit with care.\nmodels:\n" + entry_yaml("first")
                    + entry_yaml("second"))
    updated = make_entry("second", revision="f" * 40, description="retrained")
    upsert_entry(path, updated)
    upsert_entry(path, make_entry("third"))
    text = path.read_text()
    assert text.startswith("# Models offered by the app.\n# Edit with care.\n")
    manifest = load_manifest(path)
    assert manifest.ids == ["first", "second", "third"]
    assert manifest.get("second").revision == "f" * 40 and manifest.get("second").description == "retrained"
    assert manifest.get("first") == parse_manifest("models:\n" + entry_yaml("first")).get("first")
    assert [p.name for p in tmp_path.iterdir()] == ["m.yaml"]


def test_upsert_creates_a_missing_manifest_and_checks_models(tmp_path):
    path = tmp_path / "sub" / "m.yaml"
    upsert_entry(path, make_entry("one"))
    assert load_manifest(path).ids == ["one"]
    with pytest.raises(ManifestError, match="not a registered detector"):
        upsert_entry(path, make_entry("two", model="mystery"), known_models=["padim"])
    assert load_manifest(path).ids == ["one"]


def test_upsert_never_overwrites_a_broken_manifest(tmp_path):
    path = tmp_path / "m.yaml"
    broken = "models:\n" + entry_yaml("x", revision="main")
    path.write_text(broken)
    with pytest.raises(ManifestError):
        upsert_entry(path, make_entry("y"))
    assert path.read_text() == broken


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.yaml"
    save_manifest(path, Manifest(models=[make_entry("one")]))
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(manifest_mod.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        upsert_entry(path, make_entry("two"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.yaml"]  # no temporary file left behind


def test_entry_rules():
    with pytest.raises(ValueError, match="iadbe.json"):
        make_entry(files={"weights.safetensors": SHA_B})
    with pytest.raises(ValueError, match="pickled"):
        make_entry(files={"iadbe.json": SHA_A, "weights.safetensors": SHA_B, "w.pth": SHA_A})
    with pytest.raises(ValueError, match="64 lowercase hex"):
        make_entry(files={"iadbe.json": "A" * 64, "weights.safetensors": SHA_B})
    with pytest.raises(ValueError, match="finite"):
        make_entry(metrics={"image_AUROC": float("nan")})
    ok = make_entry(files={"iadbe.json": SHA_A, "weights.safetensors": SHA_B, "openvino/model.xml": SHA_A,
                           "openvino/model.bin": SHA_B, "README.md": SHA_A}, image_size=128, path_in_repo="/a/b/")
    assert ok.image_size == (128, 128) and ok.path_in_repo == "a/b"
    assert make_entry(repo_type="dataset", path_in_repo="").hf_ref == f"hf://datasets/iadbe/padim-mvtec@{REV}"


def test_saved_yaml_round_trips(tmp_path):
    path = tmp_path / "m.yaml"
    entries = [make_entry("one"), make_entry("two", backbone=None, metrics={})]
    save_manifest(path, Manifest(models=entries))
    assert load_manifest(path).models == entries
    assert "null" not in path.read_text()
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert Path(path).read_text().startswith("models:\n")


def test_catalog_parses_the_manifest_once_per_version_of_the_file(tmp_path, monkeypatch):
    """The app resolves a model on every /predict: the parsed manifest is reused until the file changes."""
    from iadbe import catalog

    path = tmp_path / "m.yaml"
    path.write_text("models:\n" + entry_yaml("padim-bottle"))
    calls = []
    real = manifest_mod.load_manifest
    monkeypatch.setattr(manifest_mod, "load_manifest", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert [e.id for e in catalog.manifest_entries(path)] == ["padim-bottle"]
    assert [e.id for e in catalog.manifest_entries(path)] == ["padim-bottle"]
    assert len(calls) == 1
    path.write_text("models:\n" + entry_yaml("padim-bottle") + entry_yaml("padim-cable"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    assert [e.id for e in catalog.manifest_entries(path)] == ["padim-bottle", "padim-cable"]
    assert len(calls) == 2
    path.unlink()
    assert catalog.manifest_entries(path) == []
