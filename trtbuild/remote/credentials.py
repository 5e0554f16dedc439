"""The credentials a registry store sends: the URL's own ``user:password``, else ``TRTBUILD_REGISTRY_USERNAME`` /
``TRTBUILD_REGISTRY_PASSWORD``, else the Docker config (``$DOCKER_CONFIG`` or ``~/.docker/config.json``:
``auths``, ``credHelpers``, ``credsStore``, through oras-py's auth backend), looked up as ``HOST[:PORT]``,
``https://HOST[:PORT]`` and ``http://HOST[:PORT]``."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path

import oras.auth.base
import oras.utils

from trtbuild.remote.artifact import CacheError


def credentials_for(host: str, userinfo: tuple[str, str] | None, env: Mapping[str, str]) -> str | None:
    """Base64 ``user:password`` for ``host`` (``HOST[:PORT]``), or ``None`` (in the order of this module's docstring).

    Raises:
        CacheError: the Docker config exists but is not a JSON object (the message names the file only).
    """
    if userinfo is not None:
        return base64.b64encode(f"{userinfo[0]}:{userinfo[1]}".encode()).decode()
    user, password = env.get("TRTBUILD_REGISTRY_USERNAME"), env.get("TRTBUILD_REGISTRY_PASSWORD")
    if user and password:
        return base64.b64encode(f"{user}:{password}".encode()).decode()
    folder = env.get("DOCKER_CONFIG") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".docker")
    path = Path(folder) / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"remote cache: cannot read the Docker config {path}: {exc.strerror}") from None
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise CacheError(f"remote cache: the Docker config {path} is not a JSON object")
    lookup = oras.auth.base.AuthBackend()
    lookup._auth_config = {
        "auths": config.get("auths") or {},
        "credsStore": config.get("credsStore"),
        "credHelpers": config.get("credHelpers") or {},
    }
    for name in oras.utils.iter_localhosts(host):
        for candidate in (name, f"https://{name}", f"http://{name}"):
            if lookup._load_auth(candidate):
                found: str = lookup._basic_auth
                return found
    return None
