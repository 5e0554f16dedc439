"""The fleet remote cache's store: build each step once per device class, pull it everywhere else.

``open_store(url)`` gives a ``Store``; a step is looked up by its key (``lookup``), its outputs pulled
(``pull``) or pushed with its lock record (``push``). The format of an entry is ``artifact``'s; the stores
are ``registry.RegistryStore`` (an OCI registry) and ``layout.LayoutStore`` (an OCI image-layout folder).
Both are imported only when a store of their kind is opened (oras-py and requests are not imported by a
build that uses no remote cache).

URLs:

- ``oci://HOST[:PORT]/REPO``: a registry over HTTPS;
- ``oci+http://HOST[:PORT]/REPO``: over plain HTTP (a loopback or lab registry);
- ``oci-layout:PATH``: an OCI image-layout folder (relative paths from the current folder).

``REPO`` is an OCI repository name (``fleet``, ``team/trt-cache``: lower case, digits, ``._-`` separators).
A registry URL may carry ``user:password@`` before the host; the store's ``display`` drops it.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from trtbuild.remote.artifact import CacheError, Layer, RemoteEntry
from trtbuild.remote.signing import Signer, Verifier

__all__ = ["CacheError", "Layer", "RemoteEntry", "Store", "open_store"]

#: The distribution spec's repository name grammar.
REPO = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
SCHEMES = {"oci": False, "oci+http": True}  # scheme -> plain HTTP


class Store(Protocol):
    """Where built steps are shared (``open_store``). Every error is a one-line ``CacheError`` that names
    ``display`` and never a credential."""

    display: str

    def lookup(self, key: str) -> RemoteEntry | None:
        """The entry tagged ``tb1-<key>`` (manifest and record verified), or ``None`` when absent."""
        ...

    def pull(self, entry: RemoteEntry, outputs: Sequence[Path]) -> None:
        """Layer ``i`` to ``outputs[i]``, verified (sha256, size) in partial files before any is renamed
        into place; on a mismatch nothing is left at any output."""
        ...

    def push(self, key: str, record: dict[str, Any], outputs: Sequence[Path]) -> str:
        """Blobs first (present ones skipped), the record as config, the manifest last under ``tb1-<key>``;
        returns the manifest digest ``sha256:<hex>``."""
        ...


def open_store(
    url: str,
    *,
    credentials_env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    trusted_keys: Sequence[bytes | str] | None = None,
    signing_key: bytes | None = None,
) -> Store:
    """The store at ``url`` (forms: the module docstring). Opening contacts nothing; the first ``lookup``
    or ``push`` does.

    Args:
        url: ``oci://HOST[:PORT]/REPO``, ``oci+http://HOST[:PORT]/REPO`` or ``oci-layout:PATH``.
        credentials_env: where to read ``TRTBUILD_REGISTRY_USERNAME`` / ``TRTBUILD_REGISTRY_PASSWORD``,
            ``DOCKER_CONFIG`` and ``HOME`` (default: ``os.environ``).
        timeout: seconds a registry may take to accept a connection or send the next bytes.
        trusted_keys: Ed25519 public keys (raw 32 bytes, base64, or PEM): ``lookup`` then treats an
            unsigned entry as absent and refuses a wrongly signed one (``signing``).
        signing_key: an Ed25519 private key (raw 32 bytes or PEM): ``push`` signs what it sends.

    Raises:
        CacheError: a malformed URL (exit code 2; the message names it, credentials removed), a Docker
            config that is not JSON, a key that is not Ed25519, or keys given without ``cryptography``.
    """
    signer = Signer(signing_key) if signing_key is not None else None
    verifier = Verifier(trusted_keys) if trusted_keys is not None else None
    if url.startswith("oci-layout:"):
        path = url[len("oci-layout:") :]
        if not path or "\0" in path:
            raise CacheError(f"remote cache URL {url!r}: oci-layout: needs a folder (oci-layout:PATH)")
        from trtbuild.remote.layout import LayoutStore

        return LayoutStore(Path(path), url, signer=signer, verifier=verifier)
    parts = _split(url)
    from trtbuild.remote.credentials import credentials_for
    from trtbuild.remote.registry import RegistryStore

    userinfo = (
        (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        if parts.username is not None
        else None
    )
    host = _hostport(parts)
    display = f"{parts.scheme}://{host}/{parts.path.lstrip('/')}"
    env = os.environ if credentials_env is None else credentials_env
    return RegistryStore(
        host,
        parts.path.lstrip("/"),
        plain_http=SCHEMES[parts.scheme],
        credentials=credentials_for(host, userinfo, env),
        display=display,
        timeout=timeout,
        signer=signer,
        verifier=verifier,
    )


def _hostport(parts: urllib.parse.SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port is not None else host


def _redacted(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1***@", url)


def _split(url: str) -> urllib.parse.SplitResult:
    shown = _redacted(url)

    def bad(why: str) -> CacheError:
        return CacheError(
            f"remote cache URL {shown!r}: {why} (expected oci://HOST[:PORT]/REPO, oci+http://HOST[:PORT]/REPO "
            "or oci-layout:PATH)"
        )

    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        raise bad("malformed host or port") from None
    if parts.scheme not in SCHEMES:
        raise bad(f"unknown scheme {parts.scheme!r}" if parts.scheme else "no scheme")
    if not parts.hostname or not port_ok or any(char.isspace() for char in url):
        raise bad("malformed host or port")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise bad("no query or fragment allowed")
    repo = parts.path.lstrip("/")
    if not repo:
        raise bad("no repository")
    if not REPO.fullmatch(repo):
        raise bad(f"{repo!r} is not a repository name (lower case, digits, '._-' separators, '/')")
    return parts
