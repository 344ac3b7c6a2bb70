"""Publishing and the visitor's own models and data (the Training tab's lower half; wired in by its ``build``).

Pushing never uses the server's own token for a visitor, except into ``IADBE_PUSH_NAMESPACE`` when the
operator set it: the visitor's pasted token, else their Hugging Face sign-in (``gr.OAuthToken``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from iadbe.app.common import clear_session_uploads, fail, redact, resolve_model, user_errors, visitor_workspace


# --------------------------------------------------------------------------- push
@user_errors
def push(model_id: Any, repo_id: Any, private: Any, token: Any, path_in_repo: Any, request: gr.Request = None,
         profile: gr.OAuthProfile | None = None, oauth_token: gr.OAuthToken | None = None) -> tuple[str, str]:
    """``/push``: publish one of the visitor's own models to the Hub in one commit; returns (message, "" for
    the token box).

    The token is the one pasted, else the visitor's Hugging Face sign-in. The server's own token is used only
    when the operator allowed a namespace (``IADBE_PUSH_NAMESPACE``), and then only for repos inside it.
    """
    from iadbe import constants
    from iadbe.errors import IADBEError
    from iadbe.hub import push_model

    secret = str(token or "").strip() or getattr(oauth_token, "token", None) or None
    repo = str(repo_id or "").strip()
    if not repo:
        raise fail("Type the repo id (OWNER/NAME) to publish to.")
    location = Path(resolve_model(model_id, visitor_workspace(request, profile), own_only=True))
    if not location.is_dir():
        raise fail("Only models of the local store can be pushed (this one comes from the Hub).")
    if secret is None:
        _check_server_push(repo, constants.PUSH_NAMESPACE)
    try:
        result = push_model(location, repo, private=bool(private), path_in_repo=str(path_in_repo or "").strip(),
                            token=secret)
    except IADBEError as error:
        raise fail(redact(str(error), secret), title=type(error).__name__) from None
    except Exception as error:  # noqa: BLE001 - the token must not leak through an unexpected message
        raise fail(f"Push failed ({type(error).__name__}: {redact(str(error), secret)[:300]})") from None
    message = (f"Pushed {len(result.files)} files to [{result.repo_id}]({result.url}) in one commit "
               f"(`{result.revision[:12]}`). Load it with `iadbe.load_model(\"{result.hf_ref}\")`.")
    return message, ""


def _check_server_push(repo: str, namespace: str) -> None:
    """A push without the visitor's token may use the server's token only into the operator's namespace."""
    if not namespace:
        raise fail("Pushing needs your own Hugging Face token with write access: sign in with Hugging Face, or "
                   "paste a token in the token field (it is not stored or shown). This app never pushes with "
                   "the server's token.", title="No token")
    if repo.split("/", 1)[0] != namespace or repo.count("/") != 1:
        raise fail(f"Without your own token this app publishes only into {namespace}/... (the operator's "
                   "namespace): sign in with Hugging Face or paste a token to push elsewhere.", title="Not allowed")
    if not _server_token():
        raise fail(f"This server has no token of its own to publish into {namespace}/: sign in with Hugging Face "
                   "or paste a token.", title="No token")


def push_note() -> str:
    """What the push form says about tokens (the operator's namespace, when allowed)."""
    from iadbe import constants

    note = ("Publishes with **your** token: the one you paste (never stored or shown), else your Hugging Face "
            "sign-in. The server's own token is never used for your pushes")
    namespace = constants.PUSH_NAMESPACE
    if namespace:
        return note + f", except into `{namespace}/...`, which the operator opened to everyone."
    return note + "."


# --------------------------------------------------------------------------- the visitor's own models and data
@user_errors
def delete_model(model_id: Any, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:
    """``/delete_model``: remove one of the visitor's own models (single-user mode: a model of the store)."""
    workspace = visitor_workspace(request, profile)
    location = Path(resolve_model(model_id, workspace, own_only=True))
    workspace.delete_model(location.name)
    return f"Deleted your model **{location.name}**."


@user_errors
def delete_data(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:
    """``/delete_data``: remove the visitor's extracted dataset uploads."""
    workspace = visitor_workspace(request, profile)
    clear_session_uploads(request)
    workspace.clear_uploads()
    return "Deleted your uploaded data."


@user_errors
def workspace_status(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:
    """``/workspace``: whose workspace this is, what it holds and its limits."""
    from iadbe import constants

    workspace = visitor_workspace(request, profile)
    models = workspace.model_ids()
    if not workspace.private:
        return f"Single-user mode: every model of the local store ({len(models)}) is yours."
    who = (f"signed in as **{workspace.visitor.name}**" if workspace.visitor.kind == "account" else
           f"not signed in: kept for this browser session, removed {constants.WORKSPACE_TTL_S / 3600:g} h "
           "after its last use")
    return (f"Your workspace ({who}): {len(models)} of {constants.WORKSPACE_MAX_MODELS} models, "
            f"{workspace.usage_bytes() / 2**20:.1f} of {constants.WORKSPACE_MAX_BYTES / 2**20:.0f} MB. "
            "Only you can list, use, publish or delete what you upload and train here; everyone sees the "
            "shared models.")


def _server_token() -> bool:
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:  # noqa: BLE001
        return False
