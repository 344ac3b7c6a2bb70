"""Environment-driven settings, read in one place so tests can change them.

Code reads ``constants.X`` (module attributes), never ``os.environ`` directly.
"""

from __future__ import annotations

import os
from pathlib import Path


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent

#: Root for everything IADBE writes by default (model store, demo data, app outputs).
IADBE_HOME = _env_path("IADBE_HOME", Path.home() / ".cache" / "iadbe")
#: Local model store: one sub-directory per trained model.
MODEL_STORE = _env_path("IADBE_MODEL_STORE", IADBE_HOME / "models")
def _shipped_manifest() -> Path:
    """The manifest inside the package (also in a wheel); a checkout's top-level one where the package lacks it."""
    packaged = PACKAGE_DIR / "models_manifest.yaml"
    return packaged if packaged.is_file() else PROJECT_DIR / "models_manifest.yaml"


#: Manifest of pretrained models offered by the app.
MANIFEST_PATH = _env_path("IADBE_MANIFEST", _shipped_manifest())
#: Where a model can run (``load_model(backend=...)``): auto picks CUDA torch, else OpenVINO, else CPU torch.
BACKENDS = ("auto", "torch", "openvino")
#: Number of loaded models kept in memory.
MODEL_CACHE_SIZE = _env_int("IADBE_MODEL_CACHE_SIZE", 4)
#: Threads for CPU inference (0 = library default).
CPU_THREADS = _env_int("IADBE_CPU_THREADS", 0)
#: Inference precision: auto (default: the fastest precision the model's export check kept, where this machine
#: runs it natively; f32 otherwise, see iadbe/precision.py), f32 (the same numbers as torch on CPU), bf16 or f16.
OV_PRECISION = os.environ.get("IADBE_OV_PRECISION", "auto").strip().lower() or "auto"
#: The precisions ``load_model(precision=...)`` and ``iadbe predict --precision`` take.
PRECISIONS = ("auto", "f32", "bf16", "f16")
#: Folder where OpenVINO caches compiled models (off by default: a later load of a model takes 30 ms instead
#: of 150 ms, but every cached model costs its full size again on disk; docs/notes/performance.md).
OV_CACHE_DIR = os.environ.get("IADBE_OV_CACHE_DIR", "")
#: Shared data folder of this project (real MVTec images); absent on most machines.
SHARED_DATA = _env_path("IADBE_SHARED_DATA", PROJECT_DIR.parent / "shared" / "data")

#: Decompression-bomb guard: images above this many pixels are refused.
MAX_IMAGE_PIXELS = _env_int("IADBE_MAX_IMAGE_PIXELS", 80_000_000)
#: Videos: frames above this many pixels are refused (default 4K UHD), and at most this many frames are read.
MAX_VIDEO_PIXELS = _env_int("IADBE_MAX_VIDEO_PIXELS", 3840 * 2160)
MAX_VIDEO_FRAMES = _env_int("IADBE_MAX_VIDEO_FRAMES", 30 * 3600)
#: Upload/zip limits.
MAX_ZIP_BYTES = _env_int("IADBE_MAX_ZIP_BYTES", 2 * 1024**3)
MAX_ZIP_FILES = _env_int("IADBE_MAX_ZIP_FILES", 20_000)
MAX_ZIP_RATIO = _env_int("IADBE_MAX_ZIP_RATIO", 200)

HF_HUB_OFFLINE = _env_bool("HF_HUB_OFFLINE")

#: A Ray cluster that the app's Benchmark tab may send runs to (``ray://HOST:10001`` or ``HOST:6379``), set by
#: whoever runs the server; a visitor only chooses between this server and this cluster, never an address.
#: Empty (default): the tab runs benchmarks on this server only. (The CLI takes ``--address``.)
RAY_ADDRESS = os.environ.get("IADBE_RAY_ADDRESS", "").strip()

# --------------------------------------------------------------------------- public app (Space) settings
#: Set by Hugging Face on a Space; the app then defaults to shared mode.
SPACE_ID = os.environ.get("SPACE_ID", "")
#: Shared mode: every visitor gets a private workspace (uploads, trained models) and sees only the shared models
#: (manifest + this server's store) plus their own. Default: on when ``SPACE_ID`` is set, off for a local
#: ``python app.py`` (single user: every local model is listed, as in the CLI). ``IADBE_SHARED_MODE=0/1`` overrides.
SHARED_MODE = _env_bool("IADBE_SHARED_MODE", bool(SPACE_ID))
#: Where visitors' workspaces live (one folder per signed-in account or browser session).
WORKSPACES_DIR = _env_path("IADBE_WORKSPACES", IADBE_HOME / "workspaces")
#: An anonymous (browser session) workspace unused for this long is removed (also at the next start).
WORKSPACE_TTL_S = _env_int("IADBE_WORKSPACE_TTL_S", 24 * 3600)
#: Disk a visitor's workspace may hold (extracted uploads + trained models).
WORKSPACE_MAX_BYTES = _env_int("IADBE_WORKSPACE_MAX_BYTES", 2 * 1024**3)
#: Models a visitor may keep in their workspace.
WORKSPACE_MAX_MODELS = _env_int("IADBE_WORKSPACE_MAX_MODELS", 5)
#: The only namespace (user or org) the server's own token (``HF_TOKEN``) may push to for a visitor who gives
#: no token and is not signed in. Empty (default): the server's token is never used for a visitor's push.
PUSH_NAMESPACE = os.environ.get("IADBE_PUSH_NAMESPACE", "").strip().strip("/")
#: Hugging Face OAuth is configured (set on a Space whose README says ``hf_oauth: true``).
OAUTH_CONFIGURED = bool(os.environ.get("OAUTH_CLIENT_ID"))
#: Developers only, never on a public server: offer Gradio's local *mock* login (it signs every visitor in as
#: the account of the server's own token) so the sign-in path can be tried without a Space.
MOCK_LOGIN = _env_bool("IADBE_MOCK_LOGIN")


def server_host() -> str:
    """``GRADIO_SERVER_NAME`` ("" when unset); read when the app starts, not at import, as Gradio does."""
    return os.environ.get("GRADIO_SERVER_NAME", "")


def server_port() -> str:
    """``PORT`` (set by hosting platforms), else ``GRADIO_SERVER_PORT`` ("" when neither is set); read when the
    app starts."""
    return os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT", "")


def child_process_env() -> dict[str, str]:
    """This process's environment for a ``python -m iadbe...`` child, with the folder that holds this ``iadbe``
    first on ``PYTHONPATH``: run from a checkout without ``pip install -e .`` (``python app.py``), a child
    started in another folder would not find the package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_DIR), env.get("PYTHONPATH")) if p)
    return env


def yolo_subprocess_env(config_dir: Path) -> dict[str, str]:
    """The environment of IADBE's YOLO training subprocess (:mod:`iadbe.models.yolo_fit`): this process's,
    plus Ultralytics' own offline settings, which therefore never reach the process that starts it:
    ``YOLO_OFFLINE=1`` (no online check, no usage events), ``YOLO_CONFIG_DIR`` (its settings file goes to the
    run's own folder, not the user's home)."""
    env = child_process_env()
    env.update({"YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(config_dir), "YOLO_AUTOINSTALL": "False"})
    return env
