"""The ``trtbuild`` command line (click): each command parses its arguments, calls one ``ops`` function and
hands the result to ``cli.render``.

The one place that turns trtbuild's errors into messages and exit codes:
0 success; 1 a model failed (or ``plan --check`` found stale engines); 2 bad input (manifest, ONNX,
lock); 3 another run holds the project; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trtbuild.cli.options import Devices, building, common, remote, remote_cache_only
from trtbuild.errors import BuildError, TrtbuildError

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


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


def _run_build(
    manifest: Path,
    device: Devices,
    names: list[str] | None,
    jobs: int,
    json_mode: bool,
    wait: float,
    remote: Any = None,
) -> int:
    from trtbuild.cli import progress, render
    from trtbuild.ops.build import NO_STAMP, build
    from trtbuild.results import FAILED, INTERRUPTED, SKIPPED, default_stream

    projects = _load_all(manifest, device)
    stream = default_stream(json_mode)
    reporter = progress.make_reporter(stream, total=sum(len(names or project.models) for project in projects))
    runs: list[tuple[Any, Any]] = [
        (project, reporter if len(projects) == 1 else progress.for_device(reporter, project.device))
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
    render.summaries(summaries, json_mode)
    failed = (FAILED, SKIPPED, INTERRUPTED)
    return EXIT_FAILED if any(r.status in failed for s in summaries for r in s.models.values()) else 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trtbuild")
def cli() -> None:
    """Build a fleet's TensorRT engines from builds.yaml, rebuilding only what is stale."""


@cli.command("all")
@common
@building
@remote
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
@common
@building
@remote
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
    from trtbuild.cli import render
    from trtbuild.ops.plan import plan
    from trtbuild.results import FAILED, FRESH

    summaries = [plan(project, list(names) or None, remote) for project in _load_all(manifest, device)]
    render.summaries(summaries, json_mode)
    results = [result for summary in summaries for result in summary.models.values()]
    if any(result.status == FAILED for result in results):  # a builder device that did not answer
        return EXIT_FAILED
    return EXIT_FAILED if check and any(result.status != FRESH for result in results) else 0


for _name, _help in (("plan", "Show which engines are stale and why; build nothing."), ("status", "Alias of plan.")):
    cli.command(_name, help=_help)(
        click.argument("names", nargs=-1)(
            common(
                click.option("--check", is_flag=True, help="Exit 1 when anything is stale.")(remote(_guarded(_plan)))
            )
        )
    )


@cli.command("push")
@click.argument("names", nargs=-1)
@common
@remote_cache_only
@_guarded
def push_command(
    names: tuple[str, ...],
    manifest: Path,
    json_mode: bool,
    device: Devices,
    remote: Any,
) -> int:
    """Publish the steps already built (fresh here) to the remote cache (all models, or the named ones)."""
    from trtbuild.cli import render
    from trtbuild.ops.push import push

    render.pushed(push(_load(manifest, device), list(names) or None, remote), json_mode)
    return 0


@cli.command("clean")
@click.argument("names", nargs=-1)
@common
@click.option("--wait", type=click.FloatRange(min=0), default=0.0, help="Seconds to wait for another run.")
@_guarded
def clean_command(names: tuple[str, ...], manifest: Path, json_mode: bool, device: Devices, wait: float) -> int:
    """Delete engines and forget them in the lock (all models, or the named ones)."""
    from trtbuild.cli import render
    from trtbuild.ops.clean import clean

    render.removed(clean(_load(manifest, device), list(names) or None, wait), json_mode)
    return 0


@cli.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@_guarded
def init_command(folder: Path) -> int:
    """Start a fleet repository: builds.yaml, devices/<this machine>.yaml and a .gitignore."""
    from trtbuild.cli import render
    from trtbuild.ops.init import init

    render.written(init(folder))
    return 0


@cli.command("devices")
@common
@_guarded
def devices_command(manifest: Path, json_mode: bool, device: Devices) -> int:
    """List the device manifests (devices/*.yaml), the detected one and their locks."""
    from trtbuild.cli import render
    from trtbuild.ops.devices import devices

    render.devices(*devices(manifest), json_mode)
    return 0


@cli.command("config")
@common
@_guarded
def config_command(manifest: Path, json_mode: bool, device: Devices) -> int:
    """Print the manifest with the device overlay merged in."""
    from trtbuild.cli import render

    render.config(_load(manifest, device), manifest, json_mode)
    return 0


@cli.command("env")
@click.option("--json", "json_mode", is_flag=True, help="Print JSON.")
@_guarded
def env_command(json_mode: bool) -> int:
    """Print the environment fingerprint that goes into every engine's key (probed now, not cached)."""
    from trtbuild.cli import render
    from trtbuild.ops.env import env

    render.env(env(), json_mode)
    return 0


@cli.command("inspect")
@click.argument("name")
@common
@_guarded
def inspect_command(name: str, manifest: Path, json_mode: bool, device: Devices) -> int:
    """Show an engine's I/O tensors, profiles, size, layer count and precision mix."""
    from trtbuild.cli import render
    from trtbuild.ops.inspect import describe

    render.description(describe(_load(manifest, device), name), json_mode)
    return 0


@cli.command("audit")
@click.option("--rebuild", is_flag=True, help="Rebuild every engine from its recorded settings and compare.")
@common
@_guarded
def audit_command(rebuild: bool, manifest: Path, json_mode: bool, device: Devices) -> int:
    """Check every engine in the lock: file, hash, key, drift; with --rebuild, reproducibility."""
    from trtbuild.cli import render
    from trtbuild.ops.audit import audit
    from trtbuild.results import default_stream

    stream = default_stream(json_mode)
    results = audit(_load(manifest, device), rebuild, progress=lambda line: print(line, file=stream, flush=True))
    render.audit(results, json_mode)
    return 0 if all(result.ok for result in results.values()) else EXIT_FAILED


@cli.command("accuracy")
@common
@_guarded
def accuracy_command(manifest: Path, json_mode: bool, device: Devices) -> int:
    """Show the accuracy-gate reports of the reduced-precision models (FP32 vs FP16 / INT8 on the CPU)."""
    from trtbuild.cli import render
    from trtbuild.ops.accuracy import accuracy

    found = accuracy(_load(manifest, device))
    render.accuracy(found, json_mode)
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
