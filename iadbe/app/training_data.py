"""The Training tab's dataset side: where an upload goes, what ``/inspect`` reports, which detectors are offered.

An uploaded zip is extracted once per session (``/inspect`` then ``/train``), into the session's upload folder,
or in shared mode into the visitor's own workspace after the quota check (``iadbe.workspaces``): nothing of
one visitor's upload is read for another, and nothing here is cached across requests.

What was found is the library's (:func:`iadbe.data.label_summary.summarize_labels`): good images, labelled
defects, which of them training uses and which stay for validation and test. The model dropdown offers the
supervised detectors (``DetectorSpec.supervised``: the U-Net, YOLO where ultralytics is installed) only when
the dataset has labelled defects outside its test split; anomaly detectors are always offered.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gradio as gr

from iadbe.app.common import (
    clear_session_uploads,
    fail,
    file_path,
    server_folder,
    session_upload_dir,
    user_errors,
    visitor_workspace,
)

#: Under the model dropdown before a dataset is inspected.
OFFER_HINT = ("Anomaly detectors train on good images only. Supervised detectors (U-Net, YOLO) are offered "
              "once **Inspect** finds labelled defects (masks or YOLO labels) outside the dataset's test split.")


def dataset_root(dataset_zip: Any, dataset_path: Any, request: Any = None, workspace: Any = None) -> str | Path:
    """The dataset argument for the library: an uploaded zip (extracted safely into this session's upload
    folder, or the visitor's workspace in shared mode), a folder under the app's data roots, or a Hub dataset
    (downloaded; in shared mode without the server's token)."""
    uploaded = file_path(dataset_zip)
    text = str(dataset_path or "").strip()
    if uploaded:
        return _extract_upload(Path(uploaded), request, workspace)
    if text.startswith("hf://"):
        from iadbe.hub import download_dataset

        private = workspace is not None and workspace.private
        return download_dataset(text, token=False if private else None)
    if text:
        return server_folder(text)
    raise fail("Upload a dataset zip, or type a folder on the server or hf://datasets/OWNER/NAME.")


def _extract_upload(uploaded: Path, request: Any, workspace: Any = None) -> Path:
    """The dataset folder inside an uploaded zip, extracted once per session (``/inspect`` then ``/train``).
    In shared mode it goes into the visitor's workspace, after checking it fits their quota."""
    from iadbe.data import resolve_dataset_root

    key = hashlib.sha256(str(uploaded).encode()).hexdigest()[:20]  # Gradio names uploads by their content
    if workspace is None or not workspace.private:
        return resolve_dataset_root(uploaded, extract_dir=session_upload_dir(request) / key)
    destination = workspace.uploads_dir / key
    if not destination.exists():
        workspace.check_upload(uploaded)  # QuotaError before anything is unpacked
    return resolve_dataset_root(uploaded, extract_dir=destination)


def end_session(request: gr.Request) -> None:
    """``demo.unload``: the session is over, its extracted uploads go (an anonymous workspace's too)."""
    clear_session_uploads(request)
    try:
        workspace = visitor_workspace(request)
    except Exception:  # noqa: BLE001 - no session, nothing of it to clear
        return
    if workspace.visitor.anonymous:
        workspace.clear_uploads()


def read_dataset(dataset_zip: Any, dataset_path: Any, category: Any, request: Any = None,
                 profile: Any = None) -> Any:
    """The :class:`~iadbe.data.DatasetSplits` of the visitor's dataset, split as ``train`` splits it."""
    from iadbe.app.startup import import_heavy_libraries
    from iadbe.data import load_dataset

    import_heavy_libraries()
    root = dataset_root(dataset_zip, dataset_path, request, visitor_workspace(request, profile))
    return load_dataset("folder", root, str(category or "").strip() or None)


@user_errors
def inspect_dataset(dataset_zip: Any, dataset_path: Any, category: Any, request: gr.Request = None,
                    profile: gr.OAuthProfile | None = None) -> str:
    """``/inspect``: what was found for each kind of detector, then the detection report (layout, counts,
    masks, how val is built)."""
    from iadbe.data.label_summary import summarize_labels

    splits = read_dataset(dataset_zip, dataset_path, category, request, profile)
    return f"{summarize_labels(splits).text()}\n\n{splits.report()}"


def model_choices_for(labelled: bool) -> list[tuple[str, str]]:
    """(display name, registry name) of the detectors that run here: the anomaly detectors, plus the supervised
    ones when the dataset has labelled defects (``labelled``)."""
    from iadbe.app.startup import import_heavy_libraries, runnable_models
    from iadbe.models import get_spec

    import_heavy_libraries()  # the availability check imports torch: one thread at a time
    return [(display, name) for display, name in runnable_models() if labelled or not get_spec(name).supervised]


def supervised_unavailable() -> str:
    """The supervised detectors that do not run here and why, grouped by reason (e.g. YOLO without ultralytics)."""
    from iadbe.app.startup import availability
    from iadbe.models import get_spec

    by_reason: dict[str, list[str]] = {}
    for row in availability():
        spec = get_spec(row.model)
        if spec.supervised and not row.runs_here:
            by_reason.setdefault(row.reason, []).append(spec.display_name)
    return " ".join(f"Not offered: {', '.join(names)} ({reason})." for reason, names in by_reason.items())


@user_errors
def offer_models(dataset_zip: Any, dataset_path: Any, category: Any, model: Any, request: gr.Request = None,
                 profile: gr.OAuthProfile | None = None) -> tuple:
    """After ``/inspect``: the model dropdown's choices for this dataset (the chosen model kept where still
    offered) and a line saying why the supervised detectors are offered or not."""
    from iadbe.data.label_summary import summarize_labels
    from iadbe.models import get_spec

    summary = summarize_labels(read_dataset(dataset_zip, dataset_path, category, request, profile))
    choices = model_choices_for(summary.supervised_ready)
    supervised = [display for display, name in choices if get_spec(name).supervised]
    if summary.supervised_ready:
        offered = ", ".join(supervised) or "none runs here"
        note = (f"This dataset has {summary.labelled} labelled defects: the supervised detectors are offered "
                f"({offered}).")
    else:
        note = "No labelled defects outside the test split: only the anomaly detectors are offered."
    extra = supervised_unavailable()
    return gr.update(choices=choices, value=_kept(model, choices)), f"{note} {extra}".strip()


def reset_offer(model: Any) -> tuple:
    """A new dataset was chosen: back to the anomaly detectors until it is inspected."""
    choices = model_choices_for(False)
    return gr.update(choices=choices, value=_kept(model, choices)), OFFER_HINT


def _kept(model: Any, choices: list[tuple[str, str]]) -> str | None:
    """The chosen model where it is still offered, else the first offered one."""
    names = [name for _, name in choices]
    return model if model in names else (names[0] if names else None)
