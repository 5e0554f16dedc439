"""The remote cache in an OCI registry, over the distribution protocol
(https://github.com/opencontainers/distribution-spec/blob/main/spec.md).

oras-py (``oras``) gives the HTTP session (cookies off, as registries like Harbor need), the registry's two
authentication schemes (``oras.auth.TokenAuth``: the bearer-token exchange with the challenge's realm,
service and scope; ``oras.auth.BasicAuth``) and the Docker config's credential lookup (inline ``auths``,
``credHelpers``, ``credsStore``). The protocol calls themselves are made here through that session,
because oras-py's own ``push`` cannot set ``artifactType``, its ``download_blob`` writes to the final path
without a digest check, its ``upload_blob`` reads the whole file into memory, and its ``do_request`` sleeps
and retries about two minutes on a refused connection and cannot answer a ``Basic`` challenge with the
token backend. Every request has a timeout (``RegistryStore.timeout``, seconds).

Credentials (``remote.credentials``: the URL's, the environment's, the Docker config's, first found wins)
are sent only after the registry asks (HTTP 401), never logged and never put in an error message.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import oras.auth
import oras.auth.base
import oras.provider
import oras.utils
import requests
import requests.adapters

from trtbuild.remote.artifact import (
    MANIFEST_MEDIA_TYPE,
    MAX_DOCUMENT,
    CacheError,
    Layer,
    RemoteEntry,
    config_blob,
    digest_of,
    file_layer,
    manifest_bytes,
    parse_manifest,
    parse_record,
    pull_into,
    tag_of,
)
from trtbuild.remote.signing import SIGNATURE_ANNOTATION, SignedStore, Signer, Verifier, message

#: Bytes per read when streaming a blob.
CHUNK = 1024 * 1024


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """An adapter that gives every request a timeout (oras-py's own requests have none) and never retries."""

    def __init__(self, timeout: float) -> None:
        super().__init__(max_retries=0)
        self.timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        return super().send(request, stream, self.timeout if timeout is None else timeout, verify, cert, proxies)


class _Connection(threading.local):
    """One thread's oras-py registry client (a ``requests.Session`` is not promised to be thread-safe) and
    the ``Authorization`` header the registry accepted last."""

    registry: oras.provider.Registry | None = None
    basic: Any = None
    authorization: dict[str, str] | None = None


class RegistryStore(SignedStore):
    """A remote cache in repository ``repo`` of the registry at ``host`` (``HOST[:PORT]``).

    Attributes:
        display: the store's URL without credentials, for messages.
        timeout: seconds to wait for a connection or for the next bytes of an answer.
        signer: signs pushed entries (``signing``), or ``None``.
        verifier: when set, ``lookup`` returns only entries signed by a trusted key (``signing``).
    """

    def __init__(
        self,
        host: str,
        repo: str,
        *,
        plain_http: bool,
        credentials: str | None,
        display: str,
        timeout: float = 30.0,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.signer, self.verifier = signer, verifier
        self.host = host
        self.repo = repo
        self.plain_http = plain_http
        self.display = display
        self.timeout = timeout
        self._base = f"{'http' if plain_http else 'https'}://{host}/v2/{repo}"
        self._credentials = credentials  # base64 of "user:password", or None
        self._local = _Connection()

    def __repr__(self) -> str:
        return f"RegistryStore({self.display!r})"

    # --- the Store protocol ---------------------------------------------------------------------------

    def lookup(self, key: str) -> RemoteEntry | None:
        """The entry tagged ``tb1-<key>``, its manifest and record verified; ``None`` when the tag (or the
        repository) does not exist.

        Raises:
            CacheError: the registry is unreachable or refuses the credentials, the manifest is not a
                trtbuild step or does not match its digest, the config blob is missing or corrupt.
        """
        tag = tag_of(key)
        where = f"remote cache {self.display}: {tag}"
        response = self._send("GET", f"{self._base}/manifests/{tag}", headers={"Accept": MANIFEST_MEDIA_TYPE})
        with response:
            if response.status_code == 404:
                return None
            self._expect(response, (200,), f"cannot read the manifest {tag}")
            data = self._read_small(response, where)
            digest = digest_of(data)
            announced = response.headers.get("Docker-Content-Digest")
            if announced and announced != digest:
                raise CacheError(f"{where}: manifest sha256 {digest}, expected {announced}")
        config, layers, annotations = parse_manifest(data, key, where)
        if self.verifier is not None:
            signed = message(key, config["digest"], config["size"], layers)
            if not self.verifier.verify(annotations.get(SIGNATURE_ANNOTATION), signed, where):
                return None  # unsigned: absent for a store that trusts only signed entries
        blob = self._send("GET", f"{self._base}/blobs/{config['digest']}", stream=True)
        with blob:
            self._expect(blob, (200,), f"cannot read the record of {tag} ({config['digest']})")
            record = parse_record(self._read_small(blob, where), config, f"{where}: record")
        return RemoteEntry(key, digest, record, layers)

    def pull(self, entry: RemoteEntry, outputs: Sequence[Path]) -> None:
        """Download the entry's files, layer ``i`` to ``outputs[i]``: all or nothing, each verified (sha256
        and size against the manifest) in a partial file before any is renamed into place
        (``artifact.pull_into``).

        Raises:
            CacheError: unreachable, refused, a blob missing, a sha256 or size mismatch (nothing is left at
                any output), a partial file that cannot be written.
            OutsideProjectError: an output resolves outside its project.
        """
        pull_into(entry, outputs, self._blob_chunks, f"remote cache {self.display}: {tag_of(entry.key)}")

    def push(self, key: str, record: dict[str, Any], outputs: Sequence[Path]) -> str:
        """Push ``outputs`` and ``record`` as the entry ``tb1-<key>``: the blobs first (each skipped when the
        registry has it already: HEAD), the config blob (canonical JSON of ``record``), the manifest last,
        so the tag never names a manifest whose blobs are missing. A concurrent push of the same key ends
        with the tag on one of the two complete manifests.

        Returns:
            the manifest's digest, ``sha256:<hex>``.

        Raises:
            CacheError: unreachable, refused (pushing needs write access), an output unreadable, a file
                changed while it was uploaded (the registry refuses its digest), the manifest refused.
        """
        tag = tag_of(key)
        layers = [file_layer(path) for path in outputs]
        config = config_blob(record)
        config_digest = digest_of(config)
        self._push_blob(config_digest, len(config), config, None)
        for layer, path in zip(layers, outputs):
            self._push_blob(layer.digest, layer.size, None, path)
        manifest = manifest_bytes(key, config, layers, self._signature(key, config, layers))
        digest = digest_of(manifest)
        response = self._send(
            "PUT",
            f"{self._base}/manifests/{tag}",
            headers={"Content-Type": MANIFEST_MEDIA_TYPE},
            body=manifest,
        )
        with response:
            self._expect(response, (201,), f"cannot push the manifest {tag}")
            announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != digest:
            raise CacheError(f"remote cache {self.display}: {tag}: the registry stored {announced}, sent {digest}")
        return digest

    # --- protocol steps -------------------------------------------------------------------------------

    def _push_blob(self, digest: str, size: int, data: bytes | None, path: Path | None) -> None:
        """Upload one blob unless the registry has it: POST an upload session, PUT the bytes with the digest
        (a monolithic upload in two requests, which every registry supports). ``data`` or ``path`` gives
        the bytes."""
        with self._send("HEAD", f"{self._base}/blobs/{digest}") as head:
            if head.status_code == 200:
                return
            if head.status_code != 404:
                self._expect(head, (200,), f"cannot check blob {digest}")
        with self._send("POST", f"{self._base}/blobs/uploads/", headers={"Content-Length": "0"}) as started:
            self._expect(started, (202,), f"cannot start the upload of {digest}")
            location = started.headers.get("Location")
        if not location:
            raise CacheError(f"remote cache {self.display}: the registry gave no upload location for {digest}")
        url = oras.utils.append_url_params(urllib.parse.urljoin(self._base, location), {"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with self._send("PUT", url, headers=headers, body=data if data is not None else path) as done:
            self._expect(done, (201,), f"cannot upload blob {digest} ({path.name if path else 'record'})")

    @contextlib.contextmanager
    def _blob_chunks(self, layer: Layer) -> Iterator[Iterator[bytes]]:
        response = self._send("GET", f"{self._base}/blobs/{layer.digest}", stream=True)
        with response:
            self._expect(response, (200,), f"cannot download blob {layer.digest} ({layer.title})")
            yield self._chunks(response)

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_content(CHUNK)
        except requests.RequestException as exc:
            raise CacheError(self._unreachable(exc)) from None

    def _read_small(self, response: requests.Response, where: str) -> bytes:
        """The body of a manifest or config answer, refused past ``MAX_DOCUMENT`` bytes."""
        data = b""
        for chunk in self._chunks(response):
            data += chunk
            if len(data) > MAX_DOCUMENT:
                raise CacheError(f"{where}: a document over {MAX_DOCUMENT} bytes")
        return data

    # --- HTTP, authentication, errors -----------------------------------------------------------------

    def _connection(self) -> _Connection:
        local = self._local
        if local.registry is None:
            registry = oras.provider.Registry(hostname=self.host, insecure=self.plain_http, auth_backend="token")
            registry.session.mount("http://", _TimeoutAdapter(self.timeout))
            registry.session.mount("https://", _TimeoutAdapter(self.timeout))
            registry.session.trust_env = False  # no ~/.netrc credentials or proxy surprises for a fleet cache
            basic = oras.auth.get_auth_backend("basic", registry.session, self.plain_http)
            if self._credentials is not None:
                registry.auth._basic_auth = self._credentials
                basic._basic_auth = self._credentials
            else:
                basic._basic_auth = None
            local.registry, local.basic = registry, basic
        return local

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | Path | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request; on HTTP 401 answer the challenge once (``Bearer``: oras-py's token exchange for the
        challenge's scope; ``Basic``: the credentials) and send it again.

        Raises:
            CacheError: the registry is unreachable or times out, or refuses the credentials.
        """
        local = self._connection()
        assert local.registry is not None
        sent = dict(headers or {})
        if local.authorization:
            sent.update(local.authorization)
        try:
            response = self._request(local.registry.session, method, url, sent, body, stream)
            if response.status_code != 401:
                return response
            challenge = response.headers.get("Www-Authenticate", "")
            response.close()
            authorization = self._answer(local, challenge, response)
            if authorization is None:
                raise CacheError(self._refused(missing=self._credentials is None))
            local.authorization = authorization
            response = self._request(local.registry.session, method, url, {**sent, **authorization}, body, stream)
        except requests.RequestException as exc:
            raise CacheError(self._unreachable(exc)) from None
        if response.status_code == 401:
            response.close()
            local.authorization = None
            raise CacheError(self._refused(missing=self._credentials is None))
        return response

    @staticmethod
    def _request(
        session: requests.Session,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | Path | None,
        stream: bool,
    ) -> requests.Response:
        if isinstance(body, Path):
            with open(body, "rb") as handle:
                return session.request(method, url, headers=headers, data=handle, stream=stream)
        return session.request(method, url, headers=headers, data=body, stream=stream)

    def _answer(self, local: _Connection, challenge: str, response: requests.Response) -> dict[str, str] | None:
        """The ``Authorization`` header that answers ``challenge``, or ``None`` when there is none to give."""
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self._credentials is None:
                return None
            return {"Authorization": f"Basic {self._credentials}"}
        if scheme == "bearer":
            assert local.registry is not None
            token_auth = local.registry.auth
            answered, changed = token_auth.authenticate_request(response, {}, refresh=True)
            return {"Authorization": answered["Authorization"]} if changed and "Authorization" in answered else None
        return None

    def _refused(self, *, missing: bool) -> str:
        if missing:
            return (
                f"remote cache {self.display}: the registry asks for credentials (HTTP 401): set "
                "TRTBUILD_REGISTRY_USERNAME and TRTBUILD_REGISTRY_PASSWORD, or log in (docker login)"
            )
        return f"remote cache {self.display}: the registry refused the credentials (HTTP 401)"

    def _unreachable(self, exc: requests.RequestException) -> str:
        if isinstance(exc, requests.Timeout):
            why = f"no answer within {self.timeout:g} s"
        elif isinstance(exc, requests.exceptions.SSLError):
            why = "TLS handshake failed (certificate not trusted?)"
        elif isinstance(exc, requests.ConnectionError):
            text = str(exc).lower()
            if "refused" in text:
                why = "connection refused"
            elif "name or service not known" in text or "nodename nor servname" in text or "resolution" in text:
                why = "unknown host"
            elif "reset" in text or "aborted" in text:
                why = "connection lost"
            else:
                why = "cannot connect"
        else:
            why = type(exc).__name__
        return f"remote cache {self.display}: registry {self.host} unreachable: {why}"

    def _expect(self, response: requests.Response, codes: tuple[int, ...], doing: str) -> None:
        """Raise ``CacheError`` (``doing``, the status and the registry's error code) unless the status is in
        ``codes``."""
        if response.status_code in codes:
            return
        detail = ""
        with contextlib.suppress(Exception):
            errors = json.loads(response.content[:65536]).get("errors") or []
            if errors and isinstance(errors[0], dict):
                detail = f" {errors[0].get('code', '')}: {str(errors[0].get('message', ''))[:200]}"
        status = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        raise CacheError(f"remote cache {self.display}: {doing}: {status}{detail}".replace("\n", " "))
