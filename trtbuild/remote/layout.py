"""The remote cache in an OCI image-layout folder
(https://github.com/opencontainers/image-spec/blob/main/image-layout.md), for air-gapped sites: carry the
folder, or ``skopeo copy oci:PATH:tb1-<key> docker://...`` it into a registry.

The folder holds ``oci-layout`` (``{"imageLayoutVersion": "1.0.0"}``), ``index.json`` (one manifest
descriptor per tag, the tag in ``org.opencontainers.image.ref.name``) and ``blobs/sha256/<hex>``. Every
file is written through a partial file and renamed into place (``files``); blobs before the manifest,
the manifest before ``index.json``, which is rewritten whole under a lock (``index.json.lock``, filelock)
so concurrent pushes of different keys all stay in it and a second push of a key replaces the first.
Reading takes no lock: ``index.json`` is always whole.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import filelock

from trtbuild import files
from trtbuild.errors import os_error_line
from trtbuild.remote.artifact import (
    ARTIFACT_TYPE,
    DIGEST,
    MANIFEST_MEDIA_TYPE,
    MAX_DOCUMENT,
    CacheError,
    Layer,
    RemoteEntry,
    check_bytes,
    config_blob,
    digest_of,
    file_layer,
    manifest_bytes,
    parse_manifest,
    parse_record,
    pull_into,
    tag_of,
    write_verified,
)
from trtbuild.remote.signing import SIGNATURE_ANNOTATION, SignedStore, Signer, Verifier, message

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
CHUNK = 4 * 1024 * 1024
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


class LayoutStore(SignedStore):
    """A remote cache in the OCI image-layout folder ``root`` (created by the first push).

    Attributes:
        display: ``oci-layout:PATH``, for messages.
        signer: signs pushed entries (``signing``), or ``None``.
        verifier: when set, ``lookup`` returns only entries signed by a trusted key (``signing``).
    """

    def __init__(
        self, root: Path, display: str, *, signer: Signer | None = None, verifier: Verifier | None = None
    ) -> None:
        self.root = root
        self.display = display
        self.signer, self.verifier = signer, verifier

    def __repr__(self) -> str:
        return f"LayoutStore({self.display!r})"

    def lookup(self, key: str) -> RemoteEntry | None:
        """The entry tagged ``tb1-<key>`` in ``index.json``, its manifest and record verified; ``None`` when
        the folder, its index or the tag does not exist.

        Raises:
            CacheError: not an OCI layout of version 1.0.0, an unreadable index, a manifest or record
                missing, corrupt or not a trtbuild step.
        """
        tag = tag_of(key)
        where = f"remote cache {self.display}: {tag}"
        index = self._read_index()
        found = [entry for entry in index.get("manifests", []) if _ref_name(entry) == tag]
        if not found:
            return None
        manifest = found[-1]
        if not isinstance(manifest, dict) or not DIGEST.fullmatch(str(manifest.get("digest"))):
            raise CacheError(f"{where}: index.json has a malformed descriptor for it")
        data = self._read_blob(manifest["digest"], where)
        check_bytes(data, manifest["digest"], manifest.get("size", -1), f"{where}: manifest")
        config, layers, annotations = parse_manifest(data, key, where)
        if self.verifier is not None:
            signed = message(key, config["digest"], config["size"], layers)
            if not self.verifier.verify(annotations.get(SIGNATURE_ANNOTATION), signed, where):
                return None  # unsigned: absent for a store that trusts only signed entries
        record = parse_record(self._read_blob(config["digest"], where), config, f"{where}: record")
        return RemoteEntry(key, manifest["digest"], record, layers)

    def pull(self, entry: RemoteEntry, outputs: Sequence[Path]) -> None:
        """Copy the entry's blobs to ``outputs`` (layer ``i`` to ``outputs[i]``): all or nothing, each
        verified (sha256 and size) in a partial file before any is renamed into place.

        Raises:
            CacheError: a blob missing, a sha256 or size mismatch (nothing is left at any output), a
                partial file that cannot be written.
            OutsideProjectError: an output resolves outside its project.
        """
        pull_into(entry, outputs, self._blob_chunks, f"remote cache {self.display}: {tag_of(entry.key)}")

    def push(self, key: str, record: dict[str, Any], outputs: Sequence[Path]) -> str:
        """Store ``outputs`` and ``record`` as the entry ``tb1-<key>``: blobs (skipped when present), the
        config (canonical JSON of ``record``), the manifest, then ``index.json`` under its lock.

        Returns:
            the manifest's digest, ``sha256:<hex>``.

        Raises:
            CacheError: an output unreadable or changed while copied, the folder not writable, or not an
                OCI layout of version 1.0.0.
        """
        tag = tag_of(key)
        try:
            self._ensure_layout()
            layers = [self._put_file(path) for path in outputs]
            config = config_blob(record)
            self._put_bytes(config)
            manifest = manifest_bytes(key, config, layers, self._signature(key, config, layers))
            digest = self._put_bytes(manifest)
            descriptor = {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "artifactType": ARTIFACT_TYPE,
                "digest": digest,
                "size": len(manifest),
                "annotations": {REF_NAME: tag},
            }
            with filelock.FileLock(str(self.root / "index.json.lock")):
                index = self._read_index()
                kept = [entry for entry in index.get("manifests", []) if _ref_name(entry) != tag]
                index["manifests"] = [*kept, descriptor]
                files.write_atomic(self.root / "index.json", (json.dumps(index, indent=2) + "\n").encode())
        except OSError as exc:
            raise CacheError(f"remote cache {self.display}: {os_error_line(exc, doing='cannot write')}") from None
        return digest

    # --- the folder -----------------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        if not DIGEST.fullmatch(digest):  # never a path outside blobs/sha256
            raise CacheError(f"remote cache {self.display}: malformed digest {digest!r}")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def _ensure_layout(self) -> None:
        marker = self.root / "oci-layout"
        if marker.exists():
            self._check_layout()
            return
        self.root.mkdir(parents=True, exist_ok=True)
        files.write_atomic(marker, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())

    def _check_layout(self) -> None:
        marker = self.root / "oci-layout"
        try:
            version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
        except (OSError, ValueError, AttributeError):
            version = None
        if version != LAYOUT_VERSION:
            raise CacheError(f"remote cache {self.display}: {marker} is not an OCI layout of version {LAYOUT_VERSION}")

    def _read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        except OSError as exc:
            raise CacheError(f"remote cache {self.display}: {os_error_line(exc, path, 'cannot read')}") from None
        self._check_layout()
        try:
            index = json.loads(text)
        except ValueError:
            index = None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise CacheError(f"remote cache {self.display}: {path} is not an OCI image index")
        return index

    def _read_blob(self, digest: str, where: str) -> bytes:
        path = self._blob_path(digest)
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_DOCUMENT + 1)
        except FileNotFoundError:
            raise CacheError(f"{where}: blob {digest} missing from the layout") from None
        except OSError as exc:
            raise CacheError(f"{where}: {os_error_line(exc, path, 'cannot read')}") from None
        if len(data) > MAX_DOCUMENT:
            raise CacheError(f"{where}: blob {digest} is over {MAX_DOCUMENT} bytes for a document")
        return data

    @contextlib.contextmanager
    def _blob_chunks(self, layer: Layer) -> Iterator[Iterator[bytes]]:
        path = self._blob_path(layer.digest)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            raise CacheError(f"remote cache {self.display}: blob {layer.digest} missing from the layout") from None
        with handle:
            yield iter(lambda: handle.read(CHUNK), b"")

    def _put_bytes(self, data: bytes) -> str:
        digest = digest_of(data)
        target = self._blob_path(digest)
        if not target.exists():
            files.write_atomic(target, data)
        return digest

    def _put_file(self, path: Path) -> Layer:
        """Copy ``path`` into ``blobs/sha256`` (skipped when there), hashing what is copied so the blob's
        name is the hash of the very bytes it holds."""
        layer = file_layer(path)
        target = self._blob_path(layer.digest)
        if target.exists():
            return layer
        with files.partial_path(target) as partial:
            try:
                with open(path, "rb") as source:
                    write_verified(iter(lambda: source.read(CHUNK), b""), partial, layer, str(path))
            except CacheError:
                raise CacheError(f"remote cache {self.display}: {path} changed while it was pushed") from None
            files.publish(partial, target)
        return layer


def _ref_name(entry: Any) -> Any:
    return (entry.get("annotations") or {}).get(REF_NAME) if isinstance(entry, dict) else None
