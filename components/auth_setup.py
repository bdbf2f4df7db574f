"""Write Streamlit's sign-in settings (the ``[auth]`` section of ``.streamlit/secrets.toml``) from environment
variables, before the server starts: ``python -m components.auth_setup [SECRETS_FILE]``.

Streamlit reads its secrets once, when the server starts, so this runs first (the Dockerfile does).
It uses no SegLoop or Streamlit code. Nothing is written when no variables are set (the app then runs in
single-user local mode) or when the file already has an ``[auth]`` section (settings made by hand win).

Two sources, the first complete one wins:

- a Hugging Face Space with ``hf_oauth: true`` in its README front matter: OAUTH_CLIENT_ID,
  OAUTH_CLIENT_SECRET, OPENID_PROVIDER_URL, SPACE_HOST (and OAUTH_SCOPES), set by Hugging Face;
- any OpenID Connect provider: SEGLOOP_OIDC_CLIENT_ID, SEGLOOP_OIDC_CLIENT_SECRET,
  SEGLOOP_OIDC_PROVIDER_URL (the issuer, or its ``/.well-known/openid-configuration`` URL) and
  SEGLOOP_OIDC_REDIRECT_URI (default ``http://localhost:{port}/oauth2callback``; Streamlit fills in the
  port); optionally SEGLOOP_OIDC_SCOPE and SEGLOOP_OIDC_PROMPT.

The cookie that keeps people signed in is signed with SEGLOOP_COOKIE_SECRET, or else a random secret made
here (everyone then signs in again after a restart). The file is written readable by its owner only; the
secrets are never printed.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tomllib
from pathlib import Path
from typing import Mapping

DEFAULT_PATH = Path(".streamlit") / "secrets.toml"
WELL_KNOWN = "/.well-known/openid-configuration"


def _metadata_url(provider: str) -> str:
    provider = provider.strip().rstrip("/")
    return provider if provider.endswith(WELL_KNOWN) else provider + WELL_KNOWN


def auth_settings(env: Mapping[str, str]) -> tuple[dict, str] | None:
    """The ``[auth]`` settings the environment asks for, and where they came from; None when it asks for none.

    Parameters
    ----------
    env : mapping
        The environment (``os.environ``).

    Returns
    -------
    (dict, str) or None
        ``redirect_uri``, ``cookie_secret``, ``client_id``, ``client_secret``, ``server_metadata_url`` and
        ``client_kwargs`` (``scope``, and ``prompt`` when set), with "Hugging Face Space" or
        "SEGLOOP_OIDC_* variables".

    Examples
    --------
    >>> env = {"OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s", "OPENID_PROVIDER_URL": "https://huggingface.co",
    ...        "SPACE_HOST": "me-segloop.hf.space", "OAUTH_SCOPES": "openid profile email",
    ...        "SEGLOOP_COOKIE_SECRET": "c"}
    >>> settings, source = auth_settings(env)
    >>> settings["redirect_uri"], source
    ('https://me-segloop.hf.space/oauth2callback', 'Hugging Face Space')
    >>> settings["server_metadata_url"]
    'https://huggingface.co/.well-known/openid-configuration'
    >>> auth_settings({}) is None
    True
    """
    get = lambda k: (env.get(k) or "").strip()  # noqa: E731
    cookie = get("SEGLOOP_COOKIE_SECRET") or secrets.token_hex(32)
    if all(get(k) for k in ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OPENID_PROVIDER_URL", "SPACE_HOST")):
        kwargs = {"scope": get("OAUTH_SCOPES") or "openid profile email"}
        if get("SEGLOOP_OIDC_PROMPT"):
            kwargs["prompt"] = get("SEGLOOP_OIDC_PROMPT")
        return ({"redirect_uri": f"https://{get('SPACE_HOST')}/oauth2callback", "cookie_secret": cookie,
                 "client_id": get("OAUTH_CLIENT_ID"), "client_secret": get("OAUTH_CLIENT_SECRET"),
                 "server_metadata_url": _metadata_url(get("OPENID_PROVIDER_URL")), "client_kwargs": kwargs},
                "Hugging Face Space")
    if all(get(k) for k in ("SEGLOOP_OIDC_CLIENT_ID", "SEGLOOP_OIDC_CLIENT_SECRET", "SEGLOOP_OIDC_PROVIDER_URL")):
        kwargs = {"scope": get("SEGLOOP_OIDC_SCOPE") or "openid profile email"}
        if get("SEGLOOP_OIDC_PROMPT"):
            kwargs["prompt"] = get("SEGLOOP_OIDC_PROMPT")
        return ({"redirect_uri": get("SEGLOOP_OIDC_REDIRECT_URI") or "http://localhost:{port}/oauth2callback",
                 "cookie_secret": cookie, "client_id": get("SEGLOOP_OIDC_CLIENT_ID"),
                 "client_secret": get("SEGLOOP_OIDC_CLIENT_SECRET"),
                 "server_metadata_url": _metadata_url(get("SEGLOOP_OIDC_PROVIDER_URL")), "client_kwargs": kwargs},
                "SEGLOOP_OIDC_* variables")
    return None


def auth_toml(settings: dict) -> str:
    """The ``[auth]`` section as TOML text (strings quoted as JSON does, which TOML reads the same).

    Examples
    --------
    >>> print(auth_toml({"client_id": "a\\"b", "client_kwargs": {"scope": "openid"}}), end="")
    [auth]
    client_id = "a\\"b"
    client_kwargs = { scope = "openid" }
    """
    lines = ["[auth]"]
    for key, value in settings.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} = {json.dumps(str(v))}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        else:
            lines.append(f"{key} = {json.dumps(str(value))}")
    return "\n".join(lines) + "\n"


def write_auth_secrets(path: str | Path = DEFAULT_PATH, env: Mapping[str, str] | None = None) -> str:
    """Add the ``[auth]`` section the environment asks for to the secrets file; returns what was done, in words.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        The secrets file (created, with its folder, when missing; mode 0600).
    env : mapping, optional
        The environment; default ``os.environ``.

    Returns
    -------
    str
        One line for the start-up log (no secret in it).
    """
    env = os.environ if env is None else env
    found = auth_settings(env)
    if found is None:
        return "sign-in: not configured (single-user local mode)"
    settings, source = found
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    if old:
        try:
            if "auth" in tomllib.loads(old):
                return f"sign-in: {path} already has an [auth] section; left as it is"
        except tomllib.TOMLDecodeError as exc:
            return f"sign-in: {path} is not valid TOML ({exc}); left as it is, sign-in not configured"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (old.rstrip("\n") + "\n\n" if old else "") + auth_toml(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return f"sign-in: [auth] written to {path} from the {source} (redirect URI {settings['redirect_uri']})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(write_auth_secrets(argv[0] if argv else DEFAULT_PATH), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
