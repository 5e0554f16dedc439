"""The ``trtbuild`` command line (click): all, build, plan/status, clean, schema.

The one place that turns trtbuild's errors into messages and exit codes:
0 success; 1 a model failed (or ``plan --check`` found stale engines); 2 bad input (manifest, ONNX,
lock); 3 another run holds the project; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trtbuild.errors import BuildError, TrtbuildError
from trtbuild.locate import MANIFEST_NAME, find_manifest

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130
#: ``--device`` as a command receives it (``_devices``): not given, given once, given several times.
Devices = str | tuple[str, ...] | None


def _manifest(_: Any, __: Any, value: Path | None) -> Path:
    """``-f`` as given, else ``builds.yaml`` in the current folder or the nearest parent (``trtbuild.locate``)."""
    if value is not None:
        return value
    found = find_manifest(Path.cwd())
    if found is None:
        raise click.UsageError(
            f"no {MANIFEST_NAME} in {Path.cwd()} or any parent folder; pass -f FILE or run `trtbuild init`"
        )
    return Path(os.path.relpath(found))  # messages name it as the user would: builds.yaml, ../builds.yaml


def _devices(_: Any, __: Any, value: tuple[str, ...]) -> Devices:
    """``--device``: ``None`` when not given, the name when given once, the names when given several times."""
    names = tuple(dict.fromkeys(value))
    return None if not names else names[0] if len(names) == 1 else names


def _common(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes."""
    options = [
        click.option(
            "-f",
            "--file",
            "manifest",
            type=click.Path(path_type=Path),
            default=None,
            callback=_manifest,
            help=f"The manifest [default: {MANIFEST_NAME} here or in the nearest parent folder].",
        ),
        click.option("--json", "json_mode", is_flag=True, help="Print a machine-readable summary on stdout."),
        click.option(
            "-d",
            "--device",
            multiple=True,
            callback=_devices,
            help="Apply devices/DEVICE.yaml (default: detected when devices/ exists); all, build and plan take "
            "several (-d a -d b).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _building(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that build."""
    function = click.option(
        "-j",
        "--jobs",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Engines built at once (small Jetsons: 1).",
    )(function)
    return click.option(
        "--wait",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help="Seconds to wait for another run on this project to finish.",
    )(function)


_REMOTE_CACHE_OPTION = click.option(
    "--remote-cache",
    "remote_cache",
    metavar="URL",
    default=None,
    help="Pull stale steps from / push built ones to an OCI registry: oci://HOST[:PORT]/REPO, "
    "oci+http://HOST[:PORT]/REPO (plain HTTP) or oci-layout:PATH [default: remote_cache in builds.yaml].",
)


def _remote_cache_only(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--remote-cache`` alone, as ``remote`` (``push`` always pushes and always fails on a cache error:
    ``--no-push`` and ``--remote-cache-required`` mean nothing there)."""

    @functools.wraps(function)
    def wrapper(*args: Any, remote_cache: str | None, **kwargs: Any) -> Any:
        from trtbuild.ops.project import RemoteOptions

        return function(*args, remote=RemoteOptions(remote_cache, push=True, required=True), **kwargs)

    return _REMOTE_CACHE_OPTION(wrapper)


def _remote(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that use the remote cache (docs/remote-cache.md), handed to the command as
    one ``remote`` argument (``ops.project.RemoteOptions``)."""

    @functools.wraps(function)
    def wrapper(*args: Any, remote_cache: str | None, no_push: bool, remote_cache_required: bool, **kwargs: Any) -> Any:
        from trtbuild.ops.project import RemoteOptions

        remote = RemoteOptions(remote_cache, push=not no_push, required=remote_cache_required)
        return function(*args, remote=remote, **kwargs)

    options = [
        _REMOTE_CACHE_OPTION,
        click.option("--no-push", is_flag=True, help="Only pull from the remote cache (devices in the field)."),
        click.option(
            "--remote-cache-required", is_flag=True, help="Fail a step when the remote cache fails (CI builders)."
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _stop_children_and_interrupt(signum: int, frame: Any) -> None:
    """SIGINT / SIGTERM: terminate the builders at once (their steps are reported ``interrupted``), then
    unwind as a KeyboardInterrupt."""
    from trtbuild.isolation import CHILDREN

    runner = sys.modules.get("trtbuild.graph.runner")  # loaded by every command that runs steps
    if runner is not None:
        runner.request_stop()
    CHILDREN.terminate_all()
    raise KeyboardInterrupt


def _guarded(function: Callable[..., int]) -> Callable[..., None]:
    """Run a command, map trtbuild errors to red messages and exit codes, never a traceback; a reader
    that closes our output pipe ends the command quietly (``results.exit_quietly_on_broken_pipe``); any
    other ``OSError`` that reaches here (a read-only project, a full disk) is one line naming the file and
    the errno, exit 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from trtbuild.isolation import CHILDREN

        signal.signal(signal.SIGINT, _stop_children_and_interrupt)
        signal.signal(signal.SIGTERM, _stop_children_and_interrupt)
        try:
            code = function(*args, **kwargs)
        except KeyboardInterrupt:
            CHILDREN.terminate_all()
            click.secho("trtbuild: interrupted; nothing half-written was kept", fg="red", err=True)
            code = EXIT_INTERRUPTED
        except TrtbuildError as exc:
            click.secho(f"trtbuild: {exc}" if not isinstance(exc, BuildError) else str(exc), fg="red", err=True)
            code = exc.exit_code
        except BrokenPipeError:
            from trtbuild.results import exit_quietly_on_broken_pipe

            CHILDREN.terminate_all()
            exit_quietly_on_broken_pipe()
        except OSError as exc:  # the machine refused a read or write no layer below words: one line, not a traceback
            from trtbuild.errors import os_error_line

            CHILDREN.terminate_all()
            click.secho(f"trtbuild: {os_error_line(exc)}", fg="red", err=True)
            code = EXIT_FAILED
        sys.exit(code)

    return wrapper


def _load(manifest: Path, device: Devices) -> Any:
    from trtbuild.ops.project import load

    if isinstance(device, tuple):
        raise click.UsageError("this command takes one --device; all, build and plan take several")
    return load(manifest, device)


def _load_all(manifest: Path, device: Devices) -> list[Any]:
    """The project once per ``--device`` given (once when none or one is given)."""
    from trtbuild.ops.project import load

    return [load(manifest, name) for name in device] if isinstance(device, tuple) else [load(manifest, device)]


def _report(summaries: list[Any], json_mode: bool) -> None:
    """``--json`` on stdout (and of the human summary only the failures' log tails, on stderr), else the
    human summary on stdout; several devices: one summary each (``--json``: ``{"devices": [...]}``)."""
    from trtbuild.results import failure_logs, print_summary, summary_json

    if json_mode:
        for summary in summaries:
            for lines in failure_logs(summary):
                click.echo(lines, err=True)
        if len(summaries) == 1:
            click.echo(summary_json(summaries[0]))
        else:
            click.echo(json.dumps({"devices": [json.loads(summary_json(s)) for s in summaries]}, indent=2))
    else:
        for index, summary in enumerate(summaries):
            if len(summaries) > 1:
                click.echo(f"{'' if index == 0 else chr(10)}== device {summary.device} ==")
            print_summary(summary, sys.stdout)


def _run_build(
    manifest: Path,
    device: Devices,
    names: list[str] | None,
    jobs: int,
    json_mode: bool,
    wait: float,
    remote: Any = None,
) -> int:
    from trtbuild.cli import report
    from trtbuild.ops.build import NO_STAMP, build
    from trtbuild.results import FAILED, INTERRUPTED, SKIPPED, default_stream

    projects = _load_all(manifest, device)
    stream = default_stream(json_mode)
    reporter = report.make_reporter(stream, total=sum(len(names or project.models) for project in projects))
    runs: list[tuple[Any, Any]] = [
        (project, reporter if len(projects) == 1 else report.for_device(reporter, project.device))
        for project in projects
    ]
    try:
        summaries = build(
            runs,
            names,
            jobs,
            wait_seconds=wait,
            stamp_device=device if names is None and not isinstance(device, tuple) else NO_STAMP,
            remote=remote,
        )
    finally:
        reporter.close()
    _report(summaries, json_mode)
    failed = (FAILED, SKIPPED, INTERRUPTED)
    return EXIT_FAILED if any(r.status in failed for s in summaries for r in s.models.values()) else 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trtbuild")
def cli() -> None:
    """Build a fleet's TensorRT engines from builds.yaml, rebuilding only what is stale."""


@cli.command("all")
@_common
@_building
@_remote
@_guarded
def all_command(
    manifest: Path,
    json_mode: bool,
    device: Devices,
    jobs: int,
    wait: float,
    remote: Any,
) -> int:
    """Build every stale engine of the manifest."""
    return _run_build(manifest, device, None, jobs, json_mode, wait, remote)


@cli.command("build")
@click.argument("names", nargs=-1, required=True)
@_common
@_building
@_remote
@_guarded
def build_command(
    names: tuple[str, ...],
    manifest: Path,
    json_mode: bool,
    device: Devices,
    jobs: int,
    wait: float,
    remote: Any,
) -> int:
    """Build the named models' engines (and what they depend on) if stale."""
    return _run_build(manifest, device, list(names), jobs, json_mode, wait, remote)


def _plan(
    names: tuple[str, ...],
    manifest: Path,
    json_mode: bool,
    device: Devices,
    check: bool,
    remote: Any,
) -> int:
    from trtbuild.ops.plan import plan
    from trtbuild.results import FAILED, FRESH

    summaries = [plan(project, list(names) or None, remote) for project in _load_all(manifest, device)]
    _report(summaries, json_mode)
    results = [result for summary in summaries for result in summary.models.values()]
    if any(result.status == FAILED for result in results):  # a builder device that did not answer
        return EXIT_FAILED
    return EXIT_FAILED if check and any(result.status != FRESH for result in results) else 0


for _name, _help in (("plan", "Show which engines are stale and why; build nothing."), ("status", "Alias of plan.")):
    cli.command(_name, help=_help)(
        click.argument("names", nargs=-1)(
            _common(
                click.option("--check", is_flag=True, help="Exit 1 when anything is stale.")(_remote(_guarded(_plan)))
            )
        )
    )


@cli.command("push")
@click.argument("names", nargs=-1)
@_common
@_remote_cache_only
@_guarded
def push_command(
    names: tuple[str, ...],
    manifest: Path,
    json_mode: bool,
    device: Devices,
    remote: Any,
) -> int:
    """Publish the steps already built (fresh here) to the remote cache (all models, or the named ones)."""
    from dataclasses import asdict

    from trtbuild.ops.push import push

    done = push(_load(manifest, device), list(names) or None, remote)
    if json_mode:
        click.echo(json.dumps(asdict(done), indent=2))
    else:
        click.echo(
            f"{len(done.pushed)} pushed, {len(done.present)} already there, "
            f"{len(done.stale)} not fresh here (build them first)"
        )
    return 0


@cli.command("clean")
@click.argument("names", nargs=-1)
@_common
@click.option("--wait", type=click.FloatRange(min=0), default=0.0, help="Seconds to wait for another run.")
@_guarded
def clean_command(names: tuple[str, ...], manifest: Path, json_mode: bool, device: Devices, wait: float) -> int:
    """Delete engines and forget them in the lock (all models, or the named ones)."""
    from trtbuild.ops.clean import clean

    removed = clean(_load(manifest, device), list(names) or None, wait)
    if json_mode:
        click.echo(json.dumps({"removed": removed}))
    else:
        click.echo("\n".join(f"removed {path}" for path in removed) or "nothing to remove")
    return 0


@cli.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@_guarded
def init_command(folder: Path) -> int:
    """Start a fleet repository: builds.yaml, devices/<this machine>.yaml and a .gitignore."""
    from trtbuild.ops.init import init

    for path in init(folder):
        click.echo(f"wrote {os.path.relpath(path)}")
    return 0


@cli.command("devices")
@_common
@_guarded
def devices_command(manifest: Path, json_mode: bool, device: Devices) -> int:
    """List the device manifests (devices/*.yaml), the detected one and their locks."""
    from dataclasses import asdict

    from trtbuild.ops.devices import devices

    detected, found = devices(manifest)
    rows = [asdict(row) for row in found]
    if json_mode:
        click.echo(json.dumps({"detected": detected, "devices": rows}, indent=2))
    else:
        for row in rows:
            click.echo(
                f"{row['device']:<20} {'detected' if row['detected'] else '':<9} "
                f"{'locked' if row['lock'] else 'no lock'}"
            )
        click.echo(f"this machine: {detected}" + ("" if any(r["detected"] for r in rows) else " (no manifest for it)"))
    return 0


@cli.command("config")
@_common
@_guarded
def config_command(manifest: Path, json_mode: bool, device: Devices) -> int:
    """Print the manifest with the device overlay merged in."""
    import yaml

    project = _load(manifest, device)
    if json_mode:
        click.echo(json.dumps(project.document, indent=2))
    else:
        click.echo(f"# {manifest} + devices/{project.device}.yaml" if project.device else f"# {manifest}")
        click.echo(yaml.safe_dump(project.document, sort_keys=False, default_flow_style=None).rstrip())
    return 0


@cli.command("env")
@click.option("--json", "json_mode", is_flag=True, help="Print JSON.")
@_guarded
def env_command(json_mode: bool) -> int:
    """Print the environment fingerprint that goes into every engine's key (probed now, not cached)."""
    from trtbuild.ops.env import env

    found = env()
    if json_mode:
        click.echo(json.dumps(found, indent=2))
    else:
        width = max(len(key) for key in found)
        for key, value in found.items():
            click.echo(f"{key:<{width}}  {'-' if value is None else value}")
    return 0


@cli.command("inspect")
@click.argument("name")
@_common
@_guarded
def inspect_command(name: str, manifest: Path, json_mode: bool, device: Devices) -> int:
    """Show an engine's I/O tensors, profiles, size, layer count and precision mix."""
    from trtbuild.ops.inspect import describe

    description = describe(_load(manifest, device), name)
    if json_mode:
        click.echo(json.dumps(description, indent=2))
        return 0
    from trtbuild.results import human_size

    click.echo(f"{description['model']}: {description['engine']}")
    click.echo(
        f"  {human_size(description['size'])} ({description['size']:,} bytes), sha256 {description['sha256'][:16]}..."
    )
    click.echo(f"  built by {description['builder']} at {description['built_at']}")
    click.echo(f"  precision {description['precision']}, workspace {human_size(description['workspace'])}")
    click.echo(f"  from: {description['source']}")
    for index, profile in enumerate(description["profiles"]):
        for tensor, bounds in profile.items():
            click.echo(f"  profile {index}: {tensor} min {bounds['min']} opt {bounds['opt']} max {bounds['max']}")
    io = description["io"]
    tensors = (
        io
        if isinstance(io, list)
        else [dict(t, mode=mode) for mode in ("inputs", "outputs") for t in (io.get(mode) or [])]
    )
    for tensor in tensors:
        click.echo(f"  {tensor.get('mode', ''):<8} {tensor['name']:<20} {tensor['dtype']:<6} {tensor['shape']}")
    click.echo(f"  layers: {description['layers']}; precision mix: {_precision_mix(description['precisions'])}")
    return 0


def _precision_mix(precisions: Any) -> str:
    """``HALF 4, FLOAT 1`` (layers per precision, most first) from the inspector's ``{"FLOAT": 1, "HALF": 4}``."""
    if not isinstance(precisions, dict):
        return "unknown" if precisions is None else str(precisions)
    return (
        ", ".join(f"{kind} {count}" for kind, count in sorted(precisions.items(), key=lambda item: (-item[1], item[0])))
        or "none"
    )


@cli.command("audit")
@click.option("--rebuild", is_flag=True, help="Rebuild every engine from its recorded settings and compare.")
@_common
@_guarded
def audit_command(rebuild: bool, manifest: Path, json_mode: bool, device: Devices) -> int:
    """Check every engine in the lock: file, hash, key, drift; with --rebuild, reproducibility."""
    from trtbuild.ops.audit import audit
    from trtbuild.results import default_stream

    stream = default_stream(json_mode)
    results = audit(_load(manifest, device), rebuild, progress=lambda line: print(line, file=stream, flush=True))
    if json_mode:
        click.echo(json.dumps({name: vars(result) for name, result in results.items()}, indent=2))
    else:
        width = max(len(name) for name in results)
        for name, result in results.items():
            click.echo(f"{name:<{width}}  {'ok' if result.ok else 'MISMATCH':<8}  rebuild: {result.rebuild}")
            for finding in result.findings:
                click.echo(f"{'':<{width}}    - {finding}")
    return 0 if all(result.ok for result in results.values()) else EXIT_FAILED


@cli.command("accuracy")
@_common
@_guarded
def accuracy_command(manifest: Path, json_mode: bool, device: Devices) -> int:
    """Show the accuracy-gate reports of the reduced-precision models (FP32 vs FP16 / INT8 on the CPU)."""
    from trtbuild.cli.report import accuracy_table
    from trtbuild.ops.accuracy import accuracy

    found = accuracy(_load(manifest, device))
    for line in found.damaged:
        click.echo(f"warning: {line}", err=True)
    click.echo(json.dumps(found.reports, indent=2) if json_mode else accuracy_table(found.reports))
    return 0 if found.passed else EXIT_FAILED


@cli.command("schema")
@_guarded
def schema_command() -> int:
    """Print the manifest's JSON Schema (for editors validating builds.yaml)."""
    from trtbuild.manifest.schema import Manifest

    click.echo(json.dumps(Manifest.model_json_schema(), indent=2))
    return 0


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="trtbuild")


if __name__ == "__main__":
    main()
