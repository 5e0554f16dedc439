"""The remote cache's store against a real registry (CNCF distribution, tests/registry.py) and a real OCI
image-layout folder: round trips byte for byte, absent keys, tampered blobs caught before anything is
renamed into place, a registry that went away, concurrent pushes, malformed URLs, and credentials that
never show in an error."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from registry import PASSWORD, USER, LocalRegistry

from trtbuild.remote.artifact import ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, FILE_MEDIA_TYPE, TITLE
from trtbuild.remote.store import CacheError, Layer, RemoteEntry, open_store

KEY = "a" * 64
NO_CREDENTIALS = {"HOME": "/nonexistent"}  # neither the environment's variables nor ~/.docker


def outputs(folder: Path, seed: int = 0, big: int = 5 * 1024 * 1024) -> list[Path]:
    """An engine-sized file and a small one, distinct per ``seed``."""
    folder.mkdir(parents=True, exist_ok=True)
    engine, summary = folder / "model.engine", folder / "model.json"
    engine.write_bytes(os.urandom(big - 1) + bytes([seed]))
    summary.write_text(json.dumps({"seed": seed, "layers": 12}))
    return [engine, summary]


def record(seed: int = 0) -> dict[str, object]:
    return {"kind": "engine", "model": "m", "key": KEY, "components": {"seed": seed}, "outputs": [], "when": "now"}


def fresh_targets(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [folder / "model.engine", folder / "model.json"]


def assert_one_line(error: pytest.ExceptionInfo[CacheError], *secrets: str) -> str:
    text = str(error.value)
    assert "\n" not in text and text
    for secret in secrets:
        assert secret not in text
    assert error.value.__cause__ is None or secrets == ()  # raised "from None": no traceback carrying a request
    return text


# --- registry -----------------------------------------------------------------------------------------


def test_push_then_lookup_and_pull_round_trip_byte_identical(registry: LocalRegistry, tmp_path: Path) -> None:
    store = open_store(registry.url(), credentials_env=NO_CREDENTIALS)
    files = outputs(tmp_path / "built")
    digest = store.push(KEY, record(), files)
    assert digest.startswith("sha256:") and len(digest) == 71

    entry = store.lookup(KEY)
    assert isinstance(entry, RemoteEntry)
    assert entry.manifest_digest == digest
    assert entry.record == record()
    assert [layer.title for layer in entry.layers] == ["model.engine", "model.json"]
    assert entry.layers[0].size == 5 * 1024 * 1024

    targets = fresh_targets(tmp_path / "pulled")
    store.pull(entry, targets)
    for pulled, original in zip(targets, files):
        assert pulled.read_bytes() == original.read_bytes()
    assert not list((tmp_path / "pulled").glob("*.partial")) and not list((tmp_path / "pulled").glob(".*"))

    # Pushing again: every blob is there already (HEAD), the manifest is the same bytes.
    assert store.push(KEY, record(), files) == digest


def test_manifest_is_an_oci_artifact_of_a_trtbuild_step(registry: LocalRegistry, tmp_path: Path) -> None:
    import urllib.request

    store = open_store(registry.url("team/trt-cache"), credentials_env=NO_CREDENTIALS)
    store.push(KEY, record(), outputs(tmp_path / "built", big=1000))
    request = urllib.request.Request(
        f"http://{registry.host}/v2/team/trt-cache/manifests/tb1-{KEY}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request) as answer:
        manifest = json.loads(answer.read())
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [FILE_MEDIA_TYPE] * 2
    assert [layer["annotations"][TITLE] for layer in manifest["layers"]] == ["model.engine", "model.json"]


def test_absent_key_is_none(registry: LocalRegistry, tmp_path: Path) -> None:
    store = open_store(registry.url(), credentials_env=NO_CREDENTIALS)
    assert store.lookup(KEY) is None  # the repository does not exist yet
    store.push(KEY, record(), outputs(tmp_path / "built", big=100))
    assert store.lookup("b" * 64) is None


def test_tampered_blob_is_caught_and_nothing_is_left_at_the_output(registry: LocalRegistry, tmp_path: Path) -> None:
    store = open_store(registry.url(), credentials_env=NO_CREDENTIALS)
    files = outputs(tmp_path / "built")
    store.push(KEY, record(), files)
    entry = store.lookup(KEY)
    assert entry is not None

    blob = registry.blob_file(entry.layers[0].digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))

    targets = fresh_targets(tmp_path / "pulled")
    with pytest.raises(CacheError) as error:
        store.pull(entry, targets)
    text = assert_one_line(error)
    assert "sha256" in text and "expected" in text and entry.layers[0].digest in text
    assert not targets[0].exists() and not targets[1].exists()
    assert os.listdir(tmp_path / "pulled") == []  # no partial file left behind

    # A good old output stays as it was.
    targets[0].write_bytes(b"old engine")
    with pytest.raises(CacheError):
        store.pull(entry, targets)
    assert targets[0].read_bytes() == b"old engine"


def test_truncated_blob_is_caught(registry: LocalRegistry, tmp_path: Path) -> None:
    store = open_store(registry.url(), credentials_env=NO_CREDENTIALS)
    store.push(KEY, record(), outputs(tmp_path / "built", big=10_000))
    entry = store.lookup(KEY)
    assert entry is not None
    blob = registry.blob_file(entry.layers[1].digest)
    blob.write_bytes(blob.read_bytes()[:-3])
    targets = fresh_targets(tmp_path / "pulled")
    with pytest.raises(CacheError, match="size|expected"):
        store.pull(entry, targets)
    assert os.listdir(tmp_path / "pulled") == []


def test_pull_needs_one_output_per_layer(registry: LocalRegistry, tmp_path: Path) -> None:
    store = open_store(registry.url(), credentials_env=NO_CREDENTIALS)
    store.push(KEY, record(), outputs(tmp_path / "built", big=100))
    entry = store.lookup(KEY)
    assert entry is not None
    with pytest.raises(CacheError, match="2 files in the entry, 1 outputs"):
        store.pull(entry, [tmp_path / "one"])


def test_registry_stopped_is_one_line_cache_error(registry: LocalRegistry, tmp_path: Path) -> None:
    store = open_store(registry.url(), credentials_env=NO_CREDENTIALS)
    store.push(KEY, record(), outputs(tmp_path / "built", big=100))
    registry.stop()
    started = time.monotonic()
    with pytest.raises(CacheError) as error:
        store.lookup(KEY)
    assert time.monotonic() - started < 5  # no retry loop with back-off
    text = assert_one_line(error)
    assert registry.url() in text and "unreachable" in text and "connection refused" in text
    with pytest.raises(CacheError, match="unreachable"):
        store.push("c" * 64, record(), outputs(tmp_path / "other", big=100))


def test_two_concurrent_pushes_of_one_key_end_with_one_consistent_manifest(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    shared = open_store(registry.url(), credentials_env=NO_CREDENTIALS)  # one store, used by both threads
    pushed: dict[int, str] = {}
    errors: list[BaseException] = []
    sets = {seed: outputs(tmp_path / f"built{seed}", seed=seed, big=2 * 1024 * 1024) for seed in (1, 2)}
    barrier = threading.Barrier(2)

    def push(seed: int) -> None:
        try:
            barrier.wait()
            pushed[seed] = shared.push(KEY, record(seed), sets[seed])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert pushed[1] != pushed[2]

    entry = open_store(registry.url(), credentials_env=NO_CREDENTIALS).lookup(KEY)
    assert entry is not None
    winner = next(seed for seed, digest in pushed.items() if digest == entry.manifest_digest)
    assert entry.record == record(winner)  # the record and the layers come from the same push
    targets = fresh_targets(tmp_path / "pulled")
    shared.pull(entry, targets)
    for pulled, original in zip(targets, sets[winner]):
        assert pulled.read_bytes() == original.read_bytes()


# --- credentials --------------------------------------------------------------------------------------


def test_credentials_from_the_environment_work_and_wrong_ones_never_show(
    auth_registry: LocalRegistry, tmp_path: Path
) -> None:
    files = outputs(tmp_path / "built", big=1000)
    good = {"HOME": "/nonexistent", "TRTBUILD_REGISTRY_USERNAME": USER, "TRTBUILD_REGISTRY_PASSWORD": PASSWORD}
    store = open_store(auth_registry.url(), credentials_env=good)
    digest = store.push(KEY, record(), files)
    entry = store.lookup(KEY)
    assert entry is not None and entry.manifest_digest == digest

    wrong_password = "Wr0ng-" + PASSWORD
    wrong = {**good, "TRTBUILD_REGISTRY_PASSWORD": wrong_password}
    with pytest.raises(CacheError) as error:
        open_store(auth_registry.url(), credentials_env=wrong).lookup(KEY)
    text = assert_one_line(error, wrong_password, USER)
    assert "refused the credentials" in text and auth_registry.url() in text

    with pytest.raises(CacheError, match="asks for credentials") as error:
        open_store(auth_registry.url(), credentials_env=NO_CREDENTIALS).lookup(KEY)


def test_docker_config_credentials_and_url_credentials_never_show(auth_registry: LocalRegistry, tmp_path: Path) -> None:
    import base64

    docker = tmp_path / "docker"
    docker.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    unreachable = "127.0.0.1:9"  # discard port: nothing listens
    auths = {auth_registry.host: {"auth": token}, f"https://{unreachable}": {"auth": token}}
    (docker / "config.json").write_text(json.dumps({"auths": auths}))
    env = {"HOME": "/nonexistent", "DOCKER_CONFIG": str(docker)}

    store = open_store(auth_registry.url(), credentials_env=env)
    store.push(KEY, record(), outputs(tmp_path / "built", big=1000))
    assert store.lookup(KEY) is not None

    for url in (f"oci+http://{unreachable}/fleet", f"oci+http://{USER}:{PASSWORD}@{unreachable}/fleet"):
        far = open_store(url, credentials_env=env)
        assert PASSWORD not in far.display and token not in far.display
        with pytest.raises(CacheError) as error:
            far.lookup(KEY)
        assert "unreachable" in assert_one_line(error, PASSWORD, token)

    wrong_in_url = open_store(f"oci+http://{USER}:nope-{PASSWORD}@{auth_registry.host}/fleet", credentials_env=env)
    with pytest.raises(CacheError) as error:
        wrong_in_url.lookup(KEY)
    assert "refused" in assert_one_line(error, PASSWORD, token, f"nope-{PASSWORD}")


# --- URLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/fleet",
        "oci://",
        "oci://host.example",
        "oci://host.example/",
        "oci://host.example/Upper",
        "oci://host.example:99999/fleet",
        "oci://host.example:port/fleet",
        "oci://host.example/fleet?x=1",
        "oci-layout:",
        "fleet",
    ],
)
def test_malformed_url_is_a_cache_error_naming_it(url: str) -> None:
    with pytest.raises(CacheError) as error:
        open_store(url, credentials_env=NO_CREDENTIALS)
    assert repr(url) in str(error.value) and error.value.exit_code == 2


def test_malformed_url_with_credentials_names_it_without_them() -> None:
    with pytest.raises(CacheError) as error:
        open_store("oci://builder:hunter2@host.example/Fleet", credentials_env=NO_CREDENTIALS)
    assert "hunter2" not in str(error.value) and "host.example/Fleet" in str(error.value)


def test_display_drops_credentials() -> None:
    store = open_store("oci://builder:hunter2@registry.example:5000/team/cache", credentials_env=NO_CREDENTIALS)
    assert store.display == "oci://registry.example:5000/team/cache"


# --- OCI image layout ---------------------------------------------------------------------------------


def test_oci_layout_round_trip_and_a_valid_layout(tmp_path: Path) -> None:
    folder = tmp_path / "cache-layout"
    store = open_store(f"oci-layout:{folder}")
    assert store.lookup(KEY) is None  # no folder yet
    files = outputs(tmp_path / "built")
    digest = store.push(KEY, record(), files)
    store.push("b" * 64, record(2), outputs(tmp_path / "other", seed=2, big=100))
    assert store.push(KEY, record(), files) == digest  # replaces its own tag, no duplicate

    assert json.loads((folder / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((folder / "index.json").read_text())
    assert index["schemaVersion"] == 2
    names = [item["annotations"]["org.opencontainers.image.ref.name"] for item in index["manifests"]]
    assert sorted(names) == [f"tb1-{'a' * 64}", f"tb1-{'b' * 64}"]
    mine = next(item for item in index["manifests"] if item["digest"] == digest)
    assert mine["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    manifest_file = folder / "blobs/sha256" / digest.split(":")[1]
    assert mine["size"] == manifest_file.stat().st_size
    manifest = json.loads(manifest_file.read_bytes())
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = folder / "blobs/sha256" / descriptor["digest"].split(":")[1]
        assert blob.stat().st_size == descriptor["size"]

    entry = store.lookup(KEY)
    assert entry is not None and entry.record == record() and entry.manifest_digest == digest
    targets = fresh_targets(tmp_path / "pulled")
    store.pull(entry, targets)
    for pulled, original in zip(targets, files):
        assert pulled.read_bytes() == original.read_bytes()


def test_oci_layout_tampered_blob_is_caught(tmp_path: Path) -> None:
    folder = tmp_path / "cache-layout"
    store = open_store(f"oci-layout:{folder}")
    store.push(KEY, record(), outputs(tmp_path / "built", big=1000))
    entry = store.lookup(KEY)
    assert entry is not None
    blob = folder / "blobs/sha256" / entry.layers[0].digest.split(":")[1]
    blob.write_bytes(b"x" * blob.stat().st_size)
    targets = fresh_targets(tmp_path / "pulled")
    with pytest.raises(CacheError, match="sha256 .* expected"):
        store.pull(entry, targets)
    assert os.listdir(tmp_path / "pulled") == []


def test_oci_layout_refuses_a_manifest_with_a_forged_digest(tmp_path: Path) -> None:
    forged = RemoteEntry(KEY, "sha256:" + "0" * 64, {}, (Layer("sha256:../../etc", 1, "x"),))
    store = open_store(f"oci-layout:{tmp_path / 'layout'}")
    with pytest.raises(CacheError, match="malformed digest"):
        store.pull(forged, [tmp_path / "x"])


# --- signatures ---------------------------------------------------------------------------------------


def ed25519_pair() -> tuple[bytes, bytes]:
    """A fresh (raw private, raw public) Ed25519 key pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    return (
        private.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
        private.public_key().public_bytes(raw, serialization.PublicFormat.Raw),
    )


def test_signed_entries_unsigned_ones_absent_and_forgeries_refused(registry: LocalRegistry, tmp_path: Path) -> None:
    import base64
    import urllib.request

    pytest.importorskip("cryptography")
    private, public = ed25519_pair()
    other_private, _ = ed25519_pair()
    url, env = registry.url(), NO_CREDENTIALS
    signing = open_store(url, credentials_env=env, signing_key=private)
    trusting = open_store(url, credentials_env=env, trusted_keys=[base64.b64encode(public).decode()])

    signing.push(KEY, record(), outputs(tmp_path / "built", big=1000))
    entry = trusting.lookup(KEY)
    assert entry is not None and entry.record == record()
    trusting.pull(entry, fresh_targets(tmp_path / "pulled"))

    unsigned_key = "b" * 64
    open_store(url, credentials_env=env).push(unsigned_key, record(), outputs(tmp_path / "u", big=100))
    assert trusting.lookup(unsigned_key) is None  # absent: the builder rebuilds and pushes a signed one

    stranger_key = "c" * 64
    open_store(url, credentials_env=env, signing_key=other_private).push(
        stranger_key, record(), outputs(tmp_path / "s", big=100)
    )
    with pytest.raises(CacheError, match="untrusted key"):
        trusting.lookup(stranger_key)

    # A signed manifest moved to another key's tag: same blobs, same signature, another key.
    forged_key = "d" * 64
    with urllib.request.urlopen(
        urllib.request.Request(
            f"http://{registry.host}/v2/fleet/manifests/tb1-{KEY}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    ) as answer:
        manifest = json.loads(answer.read())
    manifest["annotations"]["dev.trtbuild.key"] = forged_key
    put = urllib.request.Request(
        f"http://{registry.host}/v2/fleet/manifests/tb1-{forged_key}",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        method="PUT",
    )
    urllib.request.urlopen(put).close()
    assert open_store(url, credentials_env=env).lookup(forged_key) is not None  # fine without trust
    with pytest.raises(CacheError, match="signature does not match"):
        trusting.lookup(forged_key)


def test_signed_oci_layout_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    private, public = ed25519_pair()
    url = f"oci-layout:{tmp_path / 'layout'}"
    open_store(url, signing_key=private).push(KEY, record(), outputs(tmp_path / "built", big=100))
    open_store(url).push("b" * 64, record(), outputs(tmp_path / "u", big=100))
    trusting = open_store(url, trusted_keys=[public])
    assert trusting.lookup(KEY) is not None
    assert trusting.lookup("b" * 64) is None


def test_a_key_that_is_not_ed25519_is_a_cache_error() -> None:
    pytest.importorskip("cryptography")
    with pytest.raises(CacheError, match="trusted key 1 is not an Ed25519 public key"):
        open_store("oci-layout:x", trusted_keys=["not a key"])
    with pytest.raises(CacheError, match="not an Ed25519 private key"):
        open_store("oci-layout:x", signing_key=b"short")


def test_skopeo_copies_a_layout_entry_into_the_registry_unchanged(registry: LocalRegistry, tmp_path: Path) -> None:
    """The air-gapped path: an oci-layout folder carried to a site and copied into its registry by skopeo."""
    import shutil
    import subprocess

    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    layout = tmp_path / "layout"
    files = outputs(tmp_path / "built", big=100_000)
    digest = open_store(f"oci-layout:{layout}").push(KEY, record(), files)
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:tb1-{KEY}",
            f"docker://{registry.host}/fleet:tb1-{KEY}",
        ],
        check=True,
        capture_output=True,
    )
    store = open_store(registry.url(), credentials_env=NO_CREDENTIALS)
    entry = store.lookup(KEY)
    assert entry is not None and entry.manifest_digest == digest
    targets = fresh_targets(tmp_path / "pulled")
    store.pull(entry, targets)
    assert targets[0].read_bytes() == files[0].read_bytes()
