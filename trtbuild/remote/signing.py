"""Optional Ed25519 signatures on remote cache entries (the ``cryptography`` package, extra ``signing``).

A signed entry's manifest carries the annotation ``dev.trtbuild.signature`` =
``ed25519:<key id>:<base64 signature>``; the key id is the first 16 hex digits of the sha256 of the raw
public key. The signed message binds the tag's key to the exact bytes of the entry::

    trtbuild-step-v1\\n<key>\\n<config digest> <config size>\\n<layer digest> <layer size> <title>\\n...

A store opened with trusted keys treats an unsigned entry as absent (the builder rebuilds and pushes a
signed one) and refuses a wrongly signed one (``CacheError``).

Keys: a private key is the raw 32 bytes, or a PEM (PKCS#8) file's bytes; a public key is the raw 32
bytes, their base64, or a PEM (SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from trtbuild.remote.artifact import CacheError, Layer

SIGNATURE_ANNOTATION = "dev.trtbuild.signature"
SCHEME = "ed25519"


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise CacheError(
            "remote cache: signing needs the cryptography package (pip install 'trtbuild[signing]')"
        ) from None
    return ed25519, serialization


def message(key: str, config_digest: str, config_size: int, layers: Iterable[Layer]) -> bytes:
    """The bytes a signature covers (format: the module docstring)."""
    lines = ["trtbuild-step-v1", key, f"{config_digest} {config_size}"]
    lines += [f"{layer.digest} {layer.size} {layer.title}" for layer in layers]
    return ("\n".join(lines) + "\n").encode()


def _raw_public(public: Any) -> bytes:
    _, serialization = _crypto()
    raw: bytes = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def key_id(raw_public: bytes) -> str:
    """The first 16 hex digits of the sha256 of a raw public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


class Signer:
    """Signs entries with one Ed25519 private key.

    Raises (constructor):
        CacheError: not a raw 32-byte or PEM Ed25519 private key, or cryptography missing.
    """

    def __init__(self, private_key: bytes) -> None:
        ed25519, serialization = _crypto()
        try:
            if len(private_key) == 32:
                self._key = ed25519.Ed25519PrivateKey.from_private_bytes(private_key)
            else:
                self._key = serialization.load_pem_private_key(private_key, password=None)
        except (ValueError, TypeError):
            self._key = None
        if not isinstance(self._key, ed25519.Ed25519PrivateKey):
            raise CacheError("remote cache: the signing key is not an Ed25519 private key (raw 32 bytes or PEM)")
        self.key_id = key_id(_raw_public(self._key.public_key()))

    def annotation(self, signed: bytes) -> str:
        """``ed25519:<key id>:<base64 signature of signed>``."""
        signature = base64.b64encode(self._key.sign(signed)).decode()
        return f"{SCHEME}:{self.key_id}:{signature}"


class Verifier:
    """Checks entries against trusted Ed25519 public keys.

    Raises (constructor):
        CacheError: a key that is not an Ed25519 public key, or cryptography missing.
    """

    def __init__(self, trusted: Sequence[bytes | str]) -> None:
        ed25519, serialization = _crypto()
        self._keys: dict[str, Any] = {}
        for number, given in enumerate(trusted, 1):
            data = given.encode() if isinstance(given, str) else given
            public: Any = None
            try:
                if len(data) == 32:
                    public = ed25519.Ed25519PublicKey.from_public_bytes(data)
                elif data.lstrip().startswith(b"-----BEGIN"):
                    public = serialization.load_pem_public_key(data)
                else:
                    public = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(data, validate=True))
            except (ValueError, TypeError, binascii.Error):
                public = None
            if not isinstance(public, ed25519.Ed25519PublicKey):
                raise CacheError(f"remote cache: trusted key {number} is not an Ed25519 public key")
            self._keys[key_id(_raw_public(public))] = public

    def verify(self, annotation: str | None, signed: bytes, where: str) -> bool:
        """Whether the entry is signed: ``False`` when it carries no signature at all.

        Raises:
            CacheError: a signature that is malformed, made with an untrusted key, or does not match.
        """
        if annotation is None:
            return False
        from cryptography.exceptions import InvalidSignature

        scheme, _, rest = annotation.partition(":")
        ident, _, encoded = rest.partition(":")
        public = self._keys.get(ident)
        if scheme != SCHEME or public is None:
            raise CacheError(f"{where}: signed with an untrusted key ({scheme}:{ident})")
        try:
            public.verify(base64.b64decode(encoded, validate=True), signed)
        except (InvalidSignature, binascii.Error, ValueError):
            raise CacheError(f"{where}: the signature does not match the entry (key {ident})") from None
        return True


class SignedStore:
    """What both stores share about signatures: ``signer`` signs what ``push`` sends, ``verifier`` checks
    what ``lookup`` finds (either may be ``None``)."""

    signer: Signer | None = None
    verifier: Verifier | None = None

    def _signature(self, key: str, config: bytes, layers: Sequence[Layer]) -> dict[str, str] | None:
        """The manifest annotation that signs the entry, or ``None`` without a signer."""
        if self.signer is None:
            return None
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        return {SIGNATURE_ANNOTATION: self.signer.annotation(message(key, digest, len(config), layers))}
