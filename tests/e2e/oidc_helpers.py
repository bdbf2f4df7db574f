"""A real OpenID Connect provider for the sign-in tests: `oidc-provider` from the npm registry, run by Node.js.

The package is installed once with npm into a cache folder outside the repository (SEGLOOP_OIDC_CACHE,
default ~/.cache/segloop-oidc) and reused by every later run, so starting the provider takes about a
second. tests/e2e/oidc_provider.mjs configures it: a development login form where the login typed is the
account's subject and any password is accepted, consent given on the user's behalf, and the user's
e-mail and name in the ID token.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from e2e.processes import free_port, serving

PROVIDER_SCRIPT = Path(__file__).resolve().parent / "oidc_provider.mjs"
#: The major version the provider script is written for.
PACKAGE = "oidc-provider@9"
CLIENT_ID = "segloop-e2e"
CLIENT_SECRET = "segloop-e2e-secret"


def cache_dir() -> Path:
    return Path(os.environ.get("SEGLOOP_OIDC_CACHE", "~/.cache/segloop-oidc")).expanduser()


def node() -> str | None:
    return shutil.which("node") or ("/usr/bin/node" if Path("/usr/bin/node").is_file() else None)


def ensure_installed(timeout_s: float = 300.0) -> tuple[Path | None, str]:
    """The folder whose node_modules holds oidc-provider, installing it there when missing; (None, why) on failure."""
    folder = cache_dir()
    if (folder / "node_modules" / "oidc-provider" / "package.json").is_file():
        return folder, ""
    npm = shutil.which("npm") or ("/usr/bin/npm" if Path("/usr/bin/npm").is_file() else None)
    if npm is None:
        return None, "npm not found: install Node.js 20+ and npm to run the sign-in tests"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").is_file():
        (folder / "package.json").write_text('{"name": "segloop-oidc-cache", "private": true}\n')
    try:
        res = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), PACKAGE],
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, f"npm install {PACKAGE} took longer than {timeout_s:.0f} s"
    if res.returncode != 0:
        return None, f"npm install {PACKAGE} into {folder} failed: {res.stderr[-1500:]}"
    return folder, ""


@contextlib.contextmanager
def oidc_provider(modules: Path, users: dict[str, dict[str, str]], log_path: Path,
                  timeout_s: float = 30.0) -> Iterator[str]:
    """Run the provider on a free port until the block ends; yields its issuer URL once it answers discovery.

    `users` maps each login (the subject) to {"email", "name"}.
    """
    exe = node()
    if exe is None:
        raise RuntimeError("node not found")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    cmd = [exe, str(PROVIDER_SCRIPT), str(port), str(modules), CLIENT_ID, CLIENT_SECRET, json.dumps(users)]
    with serving(cmd, f"{issuer}/.well-known/openid-configuration", log_path, timeout_s, "the OpenID provider",
                 poll_s=0.2, stop_s=10.0):
        yield issuer
