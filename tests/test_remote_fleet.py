"""The remote cache in a fleet, end to end: real projects, real engine builds, real OCI stores.

Devices are simulated with sysroots (``TRTBUILD_SYSROOT``: their /etc/nv_tegra_release and device-tree
model), so each has the environment fingerprint of a Jetson and its own project folder; they share a store.
The ``oci-layout:`` store (an OCI image-layout folder) runs the same code paths above the store as a
registry does; the registry itself is covered in test_remote_store.py.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

from conftest import ProjectDir, entries, write_widthfile_recipe
from onnx_models import conv_net
from registry import LocalRegistry
from test_build import JETPACK_6_2, sysroot

PHOTOS = "{package: skimage, glob: [data/astronaut.png, data/camera.png, data/chelsea.png, data/coffee.png]}"
STREET = "{package: ultralytics, glob: 'assets/*.jpg'}"
NANO = "NVIDIA Jetson Orin Nano Developer Kit"
NX = "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"  # same compute capability (8.7), another device


def fleet_project(root: Path) -> ProjectDir:
    """One project as every device of the fleet checks it out: an INT8 model (int8, accuracy, engine) and
    a model exported by a project recipe (export, engine)."""
    root.mkdir(parents=True, exist_ok=True)
    project = ProjectDir(root)
    conv_net(root / "net.onnx", batch="N", seed=11, channels=16, size=64)
    write_widthfile_recipe(root)
    (root / "width.txt").write_text("8\n")
    project.write_manifest(f"""
        models:
          net-int8:
            source: net.onnx
            inputs: {{input: {{min: [1, 3, 64, 64], opt: [2, 3, 64, 64], max: [4, 3, 64, 64]}}}}
            validation: {{images: {STREET}, count: 2, crops: 1}}
            calibration: {{images: {PHOTOS}, count: 4, crops: 1, algorithm: minmax}}
            precision: int8
            workspace: 256MiB
          custom:
            source: width.txt
            recipe: {{name: widthfile, size: 32}}
            precision: fp32
            workspace: 256MiB
    """)
    return project


def steps_run(run: object) -> dict[str, dict[str, str]]:
    """model -> {step kind: status} of the steps that did not end fresh."""
    return {name: {s["step"]: s["status"] for s in model["steps"]} for name, model in run.json()["models"].items()}  # type: ignore[attr-defined]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_device_of_the_same_class_pulls_everything_and_one_of_another_class_builds_only_engines(
    tmp_path: Path,
) -> None:
    store = f"oci-layout:{tmp_path / 'store'}"
    nano = sysroot(tmp_path / "nano-a-root", JETPACK_6_2, NANO)
    first = fleet_project(tmp_path / "nano-a")
    built = first.trtbuild("all", "--json", "--remote-cache", store, env=nano)
    assert built.code == 0, built.stdout + built.stderr
    assert steps_run(built) == {
        "net-int8": {"int8": "built", "accuracy": "built", "engine": "built"},
        "custom": {"export": "built", "engine": "built"},
    }

    second = fleet_project(tmp_path / "nano-b")  # the same checkout on another Orin Nano of the same JetPack
    plan = second.trtbuild(
        "plan", "--json", "--remote-cache", store, env=sysroot(tmp_path / "nano-b-root", JETPACK_6_2, NANO)
    )
    assert plan.code == 0 and f"int8: pull from {store}" in plan.json()["models"]["net-int8"]["reasons"], plan.stdout
    pulled = second.trtbuild(
        "all", "--json", "--remote-cache", store, "--no-push", env=sysroot(tmp_path / "nano-b-root", JETPACK_6_2, NANO)
    )
    assert pulled.code == 0, pulled.stdout + pulled.stderr
    assert pulled.statuses() == {"net-int8": "pulled", "custom": "pulled"}
    assert steps_run(pulled) == {
        "net-int8": {"int8": "pulled", "accuracy": "pulled", "engine": "pulled"},
        "custom": {"export": "pulled", "engine": "pulled"},
    }
    for name in ("net-int8", "custom"):  # byte-identical to the first device's, and the lock says where from
        assert digest(second.root / f"engines/{name}.engine") == digest(first.root / f"engines/{name}.engine")
        origin = entries(second.lock())[name]["origin"]
        assert origin["store"] == store and origin["manifest"].startswith("sha256:")
    assert second.trtbuild("all", "--json", env=sysroot(tmp_path / "nano-b-root", JETPACK_6_2, NANO)).statuses() == {
        "net-int8": "fresh",
        "custom": "fresh",
    }  # pulled steps are fresh steps: nothing to do, no store needed
    audit = second.trtbuild("audit", env=sysroot(tmp_path / "nano-b-root", JETPACK_6_2, NANO))
    assert audit.code == 0, audit.stdout + audit.stderr

    other = fleet_project(tmp_path / "nx")  # Orin NX: same compute capability, another device model
    nx_run = other.trtbuild(
        "all", "--json", "--remote-cache", store, env=sysroot(tmp_path / "nx-root", JETPACK_6_2, NX)
    )
    assert nx_run.code == 0, nx_run.stdout + nx_run.stderr
    assert steps_run(nx_run) == {  # device-independent steps pulled, engines never taken from another device
        "net-int8": {"int8": "pulled", "accuracy": "pulled", "engine": "built"},
        "custom": {"export": "pulled", "engine": "built"},
    }


def test_a_cache_that_does_not_answer_is_an_accelerator_not_a_dependency(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = f"oci+http://127.0.0.1:{port}/fleet"
    project = fleet_project(tmp_path / "p")
    run = project.trtbuild("build", "custom", "--json", "--remote-cache", down)
    assert run.code == 0 and run.statuses() == {"custom": "built"}, run.stdout + run.stderr
    warnings = [line for line in run.stderr.splitlines() if "remote cache" in line]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0] and "building locally" in warnings[0], run.stderr
    (project.root / "width.txt").write_text("12\n")
    required = project.trtbuild("build", "custom", "--json", "--remote-cache", down, "--remote-cache-required")
    assert required.code == 1 and required.statuses() == {"custom": "failed"}, required.stdout + required.stderr
    assert f"127.0.0.1:{port}" in required.json()["models"]["custom"]["reasons"][0]


def test_a_bad_remote_cache_url_is_bad_input(tmp_path: Path) -> None:
    project = fleet_project(tmp_path / "p")
    run = project.trtbuild("plan", "--remote-cache", "ftp://example/fleet")
    assert run.code == 2 and "ftp://example/fleet" in run.stderr, run.stderr


def test_through_a_real_registry_a_tampered_engine_blob_is_built_locally_and_the_rest_pulled(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    first = fleet_project(tmp_path / "a")
    built = first.trtbuild(
        "all", "--json", "--remote-cache", registry.url(), env=sysroot(tmp_path / "ra", JETPACK_6_2, NANO)
    )
    assert built.code == 0, built.stdout + built.stderr
    engine = entries(first.lock())["custom"]["outputs"][0]["sha256"]
    blob = registry.blob_file(f"sha256:{engine}")
    blob.write_bytes(b"\x00" + blob.read_bytes()[1:])  # one byte flipped where the registry keeps it

    second = fleet_project(tmp_path / "b")
    run = second.trtbuild(
        "all", "--json", "--remote-cache", registry.url(), env=sysroot(tmp_path / "rb", JETPACK_6_2, NANO)
    )
    assert run.code == 0, run.stdout + run.stderr
    assert steps_run(run) == {
        "net-int8": {"int8": "pulled", "accuracy": "pulled", "engine": "pulled"},
        "custom": {"export": "pulled", "engine": "built"},  # the tampered download was discarded
    }
    assert "sha256" in run.stderr and "building locally" in run.stderr, run.stderr
    assert "origin" not in entries(second.lock())["custom"] and entries(second.lock(), "export")["custom"]["origin"]
    assert not list((second.root / "engines").glob("*.partial"))


def test_push_publishes_what_was_built_and_remote_cache_in_the_manifest_is_the_default(tmp_path: Path) -> None:
    store = f"oci-layout:{tmp_path / 'store'}"
    first = fleet_project(tmp_path / "a")
    nano = sysroot(tmp_path / "ra", JETPACK_6_2, NANO)
    assert first.trtbuild("build", "custom", env=nano).code == 0  # built with no cache at all
    pushed = first.trtbuild("push", "custom", "--json", "--remote-cache", store, env=nano)
    assert pushed.code == 0, pushed.stdout + pushed.stderr
    assert pushed.json() == {
        "pushed": ["export:exports/custom.onnx", "engine:engines/custom.engine"],
        "present": [],
        "stale": [],
    }
    again = first.trtbuild("push", "--json", "--remote-cache", store, env=nano)  # every model: net-int8 never built
    assert again.json()["present"] == ["export:exports/custom.onnx", "engine:engines/custom.engine"]
    assert "engine:engines/net-int8.engine" in again.json()["stale"]

    second = fleet_project(tmp_path / "b")
    manifest = second.root / "builds.yaml"
    manifest.write_text(f"remote_cache: {store}\n" + manifest.read_text())
    run = second.trtbuild("build", "custom", "--json", env=sysroot(tmp_path / "rb", JETPACK_6_2, NANO))
    assert run.code == 0 and steps_run(run) == {"custom": {"export": "pulled", "engine": "pulled"}}, (
        run.stdout + run.stderr
    )
    manifest.write_text(manifest.read_text().replace(f"remote_cache: {store}", "remote_cache: ftp://nowhere/x"))
    bad = second.trtbuild("plan")
    assert bad.code == 2 and "builds.yaml:1: remote_cache" in bad.stderr, bad.stderr


def test_tensorrt_rtx_engines_built_ahead_of_time_for_explicit_targets_do_not_depend_on_the_host(
    tmp_path: Path,
) -> None:
    """A CPU-only CI machine builds for a fleet of RTX machines and they pull: the engine is keyed on its
    targets and the TensorRT-RTX version, not on the host. Without explicit targets it stays per host."""
    store = f"oci-layout:{tmp_path / 'store'}"

    def rtx_project(root: Path) -> ProjectDir:
        root.mkdir()
        project = ProjectDir(root)
        conv_net(root / "net.onnx", batch=1, seed=5)
        project.write_manifest("""
            models:
              targeted: {source: net.onnx, precision: fp32, workspace: 256MiB, compute_capabilities: ['8.6', '8.9']}
              host: {source: net.onnx, precision: fp32, workspace: 256MiB}
        """)
        return project

    ci = rtx_project(tmp_path / "ci")
    assert ci.trtbuild("all", "--remote-cache", store).code == 0
    other = tmp_path / "other-host"  # another machine: other memory, other device model
    sysroot(other, "", "ASUS RTX workstation")
    (other / "proc/meminfo").write_text("MemTotal:       131072000 kB\n")
    workstation = rtx_project(tmp_path / "ws")
    run = workstation.trtbuild("all", "--json", "--remote-cache", store, env={"TRTBUILD_SYSROOT": str(other)})
    assert run.code == 0, run.stdout + run.stderr
    assert steps_run(run) == {"targeted": {"engine": "pulled"}, "host": {"engine": "built"}}
    recorded = entries(workstation.lock())["targeted"]["components"]["env"]
    assert recorded["memory_gib"] == 125.0  # the lock holds this host's fingerprint: fresh here from now on
    assert workstation.trtbuild("all", "--json", env={"TRTBUILD_SYSROOT": str(other)}).statuses() == {
        "targeted": "fresh",
        "host": "fresh",
    }


def test_with_trusted_keys_only_entries_signed_by_them_are_used(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def keypair(name: str) -> tuple[Path, bytes]:
        private = Ed25519PrivateKey.generate()
        path = tmp_path / f"{name}.pem"  # outside every project: a builder's secret
        path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return path, public

    builder_key, builder_public = keypair("builder")
    _, stranger_public = keypair("stranger")
    store = f"oci-layout:{tmp_path / 'store'}"
    signed = fleet_project(tmp_path / "ci")
    pushed = signed.trtbuild("build", "custom", "--remote-cache", store, env={"TRTBUILD_SIGNING_KEY": str(builder_key)})
    assert pushed.code == 0, pushed.stderr

    def device(name: str, public: bytes) -> ProjectDir:
        project = fleet_project(tmp_path / name)
        (project.root / "keys").mkdir()
        (project.root / "keys/fleet.pub").write_bytes(public)
        manifest = project.root / "builds.yaml"
        manifest.write_text(
            f"remote_cache: {store}\nremote_cache_trusted_keys: [keys/fleet.pub]\n" + manifest.read_text()
        )
        return project

    trusting = device("trusting", builder_public).trtbuild("build", "custom", "--json", "--no-push")
    assert trusting.code == 0 and steps_run(trusting) == {"custom": {"export": "pulled", "engine": "pulled"}}, (
        trusting.stderr
    )
    wary = device("wary", stranger_public).trtbuild("build", "custom", "--json", "--no-push")
    assert wary.code == 0 and steps_run(wary) == {"custom": {"export": "built", "engine": "built"}}, wary.stderr
    assert "signed with an untrusted key" in wary.stderr and "building locally" in wary.stderr, wary.stderr
    assert wary.stderr.count(f"remote cache {store}") == 1
    assert str(builder_key) not in wary.stderr + trusting.stderr


def test_a_device_without_the_exporter_builds_engines_from_pulled_onnx(tmp_path: Path) -> None:
    """The builder has the recipe's exporter (a real installed distribution: ``fakeexporter`` 1.0 with its
    dist-info, on its PYTHONPATH); the device has none, so it could never export. It pulls the ONNX, builds
    the engine, and stays fresh afterwards: the exporter's version it cannot see is the builder's record."""
    tools = tmp_path / "tools"
    (tools / "fakeexporter").mkdir(parents=True)
    (tools / "fakeexporter/__init__.py").write_text("")
    (tools / "fakeexporter-1.0.dist-info").mkdir()
    (tools / "fakeexporter-1.0.dist-info/METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakeexporter\nVersion: 1.0\n"
    )
    store = f"oci-layout:{tmp_path / 'store'}"

    def project(name: str) -> ProjectDir:
        checkout = fleet_project(tmp_path / name)
        recipe = checkout.root / "recipes/widthfile.py"
        recipe.write_text(
            recipe.read_text()
            .replace('EXPORTERS = ("onnx",)', 'EXPORTERS = ("onnx", "fakeexporter")')
            .replace('REQUIRES = ("onnx",)', 'REQUIRES = ("onnx", "fakeexporter")')
        )
        return checkout

    builder = project("builder").trtbuild(
        "build", "custom", "--json", "--remote-cache", store, env={"PYTHONPATH": str(tools)}
    )
    assert builder.code == 0 and steps_run(builder) == {"custom": {"export": "built", "engine": "built"}}, (
        builder.stderr
    )

    alone = project("alone").trtbuild("build", "custom", "--json")  # no cache: this device cannot export
    assert alone.code == 1 and "recipe widthfile needs fakeexporter" in alone.json()["models"]["custom"]["reasons"][0]

    device = project("jetson")
    nano = sysroot(tmp_path / "root", JETPACK_6_2, NANO)  # another class: the engine is built here
    run = device.trtbuild("build", "custom", "--json", "--remote-cache", store, env=nano)
    assert run.code == 0 and steps_run(run) == {"custom": {"export": "pulled", "engine": "built"}}, (
        run.stdout + run.stderr
    )
    assert entries(device.lock(), "export")["custom"]["components"]["exporters"] == {
        "onnx": onnx_version(),
        "fakeexporter": "1.0",
    }
    again = device.trtbuild("build", "custom", "--json", env=nano)
    assert again.code == 0 and again.statuses() == {"custom": "fresh"}, again.stdout + again.stderr


def onnx_version() -> str:
    from importlib.metadata import version

    return version("onnx")


def test_a_device_overlay_names_its_own_remote_cache(tmp_path: Path) -> None:
    store = f"oci-layout:{tmp_path / 'lab-store'}"
    project = fleet_project(tmp_path / "p")
    (project.root / "devices").mkdir()
    (project.root / "devices/orin-nano-8gb.yaml").write_text(f"remote_cache: {store}\n")
    plan = project.trtbuild("plan", "custom", "--json", "--device", "orin-nano-8gb")
    assert plan.code == 0, plan.stderr
    assert plan.json()["models"]["custom"]["reasons"] == [
        "export: never exported",
        f"export: build: not in {store}",
        "never built",
    ]


class CuttingProxy:
    """A loopback HTTP proxy in front of a real registry that goes away — its port refusing connections,
    as a registry that stopped — right after it has served one given path: a registry stopped mid-run,
    at a known point. Every response closes its connection, so nothing outlives the cut."""

    def __init__(self, upstream: str, cut_after: str) -> None:
        import http.server
        import threading
        import urllib.error
        import urllib.request

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.forward()

            def do_HEAD(self) -> None:  # noqa: N802
                self.forward()

            def forward(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                request = urllib.request.Request(f"http://{upstream}{self.path}", headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, reply, body = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as refused:
                    status, reply, body = refused.code, refused.headers, refused.read()
                self.send_response(status)
                for key, value in reply.items():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.wfile.flush()
                if self.path.endswith(cut_after):
                    proxy.server.socket.close()  # new connections are refused from now on
                    threading.Thread(target=proxy.server.shutdown, daemon=True).start()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_registry_that_stops_mid_run_leaves_the_rest_to_local_builds(registry: LocalRegistry, tmp_path: Path) -> None:
    first = fleet_project(tmp_path / "a")
    nano = sysroot(tmp_path / "ra", JETPACK_6_2, NANO)
    assert first.trtbuild("all", "--remote-cache", registry.url(), env=nano).code == 0
    export = entries(first.lock(), "export")["custom"]["outputs"][0]["sha256"]
    proxy = CuttingProxy(registry.host, cut_after=f"/blobs/sha256:{export}")  # gone once the export is served

    second = fleet_project(tmp_path / "b")
    run = second.trtbuild(
        "all",
        "--json",
        "-j",
        "1",
        "--remote-cache",
        f"oci+http://{proxy.host}/fleet",
        env=sysroot(tmp_path / "rb", JETPACK_6_2, NANO),
    )
    assert run.code == 0, run.stdout + run.stderr
    assert steps_run(run) == {  # the export came before the cut (steps run in id order); the rest is built here
        "net-int8": {"int8": "built", "accuracy": "built", "engine": "built"},
        "custom": {"export": "pulled", "engine": "built"},
    }
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning: remote cache")]
    assert len(warnings) == 1 and "building locally" in warnings[0], run.stderr
    assert second.trtbuild("all", "--json", env=sysroot(tmp_path / "rb", JETPACK_6_2, NANO)).statuses() == {
        "net-int8": "fresh",
        "custom": "fresh",
    }


def test_every_command_of_the_readme_is_a_command() -> None:
    """The README's command table and the CLI agree (a command whose decorator went missing is caught)."""
    import re

    from click.testing import CliRunner

    from trtbuild.cli.main import cli

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    documented = set(re.findall(r"^\| `trtbuild (\w+)", readme, flags=re.MULTILINE))
    assert {"all", "build", "plan", "clean", "push", "audit", "inspect", "init"} <= documented
    assert documented <= set(cli.commands), documented - set(cli.commands)
    assert CliRunner().invoke(cli, ["clean", "--help"]).exit_code == 0


def test_push_takes_only_the_cache_url(tmp_path: Path) -> None:
    """``push`` always pushes and fails on any cache error: ``--no-push`` and ``--remote-cache-required``
    would be accepted and mean nothing, so they are not options of it."""
    project = fleet_project(tmp_path / "p")
    for flag in ("--no-push", "--remote-cache-required"):
        run = project.trtbuild("push", flag, "--remote-cache", f"oci-layout:{tmp_path / 'store'}")
        assert run.code == 2 and f"No such option '{flag}'" in run.stderr, run.stderr
    assert not (tmp_path / "store").exists()
