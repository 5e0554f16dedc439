"""A built step as an OCI artifact: the manifest format both stores share, the entry types, ``CacheError``
and the verified download every pulled byte goes through.

One step is one OCI image manifest (https://github.com/opencontainers/image-spec/blob/main/manifest.md)
tagged ``tb1-<key>``::

    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.trtbuild.step.v1",
     "config": {"mediaType": "application/vnd.trtbuild.step.config.v1+json", "digest": ..., "size": ...},
     "layers": [{"mediaType": "application/vnd.trtbuild.file.v1", "digest": ..., "size": ...,
                 "annotations": {"org.opencontainers.image.title": "<output's file name>"}}],
     "annotations": {"dev.trtbuild.key": "<key>"}}

The config blob is the canonical JSON (``state.keys.canonical_json``) of the step's lock record; layer
``i`` is output ``i``. The manifest bytes are canonical JSON too, so equal content gives an equal digest.
Nothing read from a store is trusted before its sha256 and size match the descriptor that named it: a
manifest against its tag's digest (when the store gives one), the config and every layer against the
manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtbuild import files
from trtbuild.errors import TrtbuildError, os_error_line
from trtbuild.state.keys import canonical_json

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.trtbuild.step.v1"
CONFIG_MEDIA_TYPE = "application/vnd.trtbuild.step.config.v1+json"
FILE_MEDIA_TYPE = "application/vnd.trtbuild.file.v1"
TITLE = "org.opencontainers.image.title"
KEY_ANNOTATION = "dev.trtbuild.key"
#: Tag prefix: ``tb1-<key>``; bumped if the artifact's layout ever changes meaning.
TAG_PREFIX = "tb1-"
#: A manifest or config larger than this (bytes) is refused unread: ours are a few KiB.
MAX_DOCUMENT = 4 * 1024 * 1024
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: What a key may be so that ``tb1-<key>`` is a valid OCI tag (``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``).
KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,123}")


class CacheError(TrtbuildError):
    """The remote cache failed: a malformed store URL (exit code 2), a registry that is down or refuses the
    credentials, a missing blob, a digest or size mismatch, a manifest that is not a trtbuild step.

    The message is one line that names the store by its display URL; credentials never appear in it."""

    exit_code = 2


@dataclass(frozen=True)
class Layer:
    """One file of an entry.

    Attributes:
        digest: ``sha256:<hex>`` of the file's bytes.
        size: its size in bytes.
        title: the output's file name when it was pushed (``org.opencontainers.image.title``).
    """

    digest: str
    size: int
    title: str


@dataclass(frozen=True)
class RemoteEntry:
    """A step found in a store (``Store.lookup``).

    Attributes:
        key: the step's key (its tag is ``tb1-<key>``).
        manifest_digest: ``sha256:<hex>`` of the manifest's bytes.
        record: the lock record pushed with it (the config blob, verified).
        layers: the outputs' blobs, in the order of ``push``'s ``outputs``.
    """

    key: str
    manifest_digest: str
    record: dict[str, Any]
    layers: tuple[Layer, ...]


def tag_of(key: str) -> str:
    """``tb1-<key>``.

    Raises:
        CacheError: ``key`` cannot be part of an OCI tag (empty, too long, characters outside ``[A-Za-z0-9._-]``).
    """
    if not KEY.fullmatch(key):
        raise CacheError(f"remote cache: {key!r} is not a valid step key for a tag")
    return TAG_PREFIX + key


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, digest: str, size: int, title: str | None = None) -> dict[str, Any]:
    """An OCI content descriptor; ``title`` becomes the ``org.opencontainers.image.title`` annotation."""
    found: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if title is not None:
        found["annotations"] = {TITLE: title}
    return found


def config_blob(record: dict[str, Any]) -> bytes:
    """The config blob of ``record``: its canonical JSON, UTF-8."""
    return canonical_json(record).encode()


def manifest_bytes(
    key: str, config: bytes, layers: Iterable[Layer], annotations: dict[str, str] | None = None
) -> bytes:
    """The manifest of a step (format: the module docstring), as canonical JSON bytes; ``annotations`` are
    added to the manifest's (a signature: ``signing``)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, digest_of(config), len(config)),
        "layers": [descriptor(FILE_MEDIA_TYPE, layer.digest, layer.size, layer.title) for layer in layers],
        "annotations": {**(annotations or {}), KEY_ANNOTATION: key},
    }
    return canonical_json(manifest).encode()


def parse_manifest(data: bytes, key: str, where: str) -> tuple[dict[str, Any], tuple[Layer, ...], dict[str, Any]]:
    """The config descriptor, the layers and the annotations of a step's manifest; ``where`` names it in
    errors.

    Raises:
        CacheError: not JSON, not an OCI manifest of a trtbuild step, a digest that is not ``sha256:<hex>``,
            a size that is not a non-negative integer, or a manifest pushed for another key.
    """

    def bad(why: str) -> CacheError:
        return CacheError(f"{where}: not a trtbuild step manifest ({why})")

    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise bad("not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise bad("schemaVersion is not 2")
    if manifest.get("mediaType") != MANIFEST_MEDIA_TYPE or manifest.get("artifactType") != ARTIFACT_TYPE:
        raise bad(f"mediaType {manifest.get('mediaType')!r}, artifactType {manifest.get('artifactType')!r}")
    annotations = manifest.get("annotations") or {}
    if not isinstance(annotations, dict) or annotations.get(KEY_ANNOTATION) != key:
        raise bad("pushed for another key")
    config = manifest.get("config")
    if not isinstance(config, dict) or not _valid_descriptor(config) or config["mediaType"] != CONFIG_MEDIA_TYPE:
        raise bad("config descriptor")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise bad("layers is not a list")
    found = []
    for layer in layers:
        if not _valid_descriptor(layer) or layer["mediaType"] != FILE_MEDIA_TYPE:
            raise bad("layer descriptor")
        title = (layer.get("annotations") or {}).get(TITLE)
        found.append(Layer(layer["digest"], layer["size"], title if isinstance(title, str) else ""))
    return config, tuple(found), annotations


def _valid_descriptor(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("mediaType"), str)
        and isinstance(value.get("digest"), str)
        and DIGEST.fullmatch(value["digest"]) is not None
        and type(value.get("size")) is int
        and value["size"] >= 0
    )


def parse_record(data: bytes, config: dict[str, Any], where: str) -> dict[str, Any]:
    """The lock record in a config blob, after checking the blob against its descriptor.

    Raises:
        CacheError: size or sha256 mismatch, or not a JSON object.
    """
    check_bytes(data, config["digest"], config["size"], where)
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        raise CacheError(f"{where}: the step's record is not a JSON object")
    return record


def check_bytes(data: bytes, digest: str, size: int, where: str) -> None:
    """Raise ``CacheError`` unless ``data`` has ``size`` bytes and sha256 ``digest``."""
    if len(data) != size:
        raise CacheError(f"{where}: size {len(data)} bytes, expected {size} ({digest})")
    if digest_of(data) != digest:
        raise CacheError(f"{where}: sha256 {digest_of(data)}, expected {digest}")


def write_verified(chunks: Iterable[bytes], partial: Path, layer: Layer, where: str) -> None:
    """Write ``chunks`` to ``partial`` (a ``files.partial_path``), checking the size (bytes) as they come and
    the sha256 at the end against ``layer``. The caller publishes the partial only if this returns.

    Raises:
        CacheError: more or fewer bytes than ``layer.size``, or another sha256.
        OSError: the partial could not be written (a full disk).
    """
    digest = hashlib.sha256()
    written = 0
    with open(partial, "wb") as handle:
        for chunk in chunks:
            written += len(chunk)
            if written > layer.size:
                raise CacheError(f"{where}: more than the {layer.size} bytes expected ({layer.digest})")
            digest.update(chunk)
            handle.write(chunk)
    if written != layer.size:
        raise CacheError(f"{where}: size {written} bytes, expected {layer.size} ({layer.digest})")
    got = "sha256:" + digest.hexdigest()
    if got != layer.digest:
        raise CacheError(f"{where}: sha256 {got}, expected {layer.digest}")


def file_layer(path: Path) -> Layer:
    """The layer of an output file: its sha256, size (bytes) and name.

    Raises:
        CacheError: it cannot be read.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(4 * 1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise CacheError(f"remote cache: cannot read {path}: {exc.strerror or exc}") from None
    return Layer("sha256:" + digest.hexdigest(), size, path.name)


def pull_into(
    entry: RemoteEntry,
    outputs: Sequence[Path],
    chunks_of: Callable[[Layer], AbstractContextManager[Iterable[bytes]]],
    where: str,
) -> None:
    """Download every layer of ``entry`` (layer ``i`` to ``outputs[i]``), all or nothing: each one goes to a
    partial file beside its output and is verified (``write_verified``); only when every layer is verified
    are they renamed into place (``files.publish``). A failure leaves every output as it was.

    ``chunks_of(layer)`` opens the layer's bytes as an iterable of chunks.

    Raises:
        CacheError: ``outputs`` does not match the layers one to one, a blob is missing or does not match
            its digest or size, or a partial file cannot be written.
        OutsideProjectError: an output lies in a confined project but resolves outside it.
    """
    if len(outputs) != len(entry.layers):
        raise CacheError(f"{where}: {len(entry.layers)} files in the entry, {len(outputs)} outputs given")
    with contextlib.ExitStack() as stack:
        ready: list[tuple[Path, Path]] = []
        for layer, target in zip(entry.layers, outputs):
            try:
                partial = stack.enter_context(files.partial_path(target))
                with chunks_of(layer) as chunks:
                    write_verified(chunks, partial, layer, f"{where}: {target.name}")
            except OSError as exc:
                raise CacheError(os_error_line(exc, target, "cannot write the pulled file")) from None
            ready.append((partial, target))
        for partial, target in ready:
            files.publish(partial, target)
