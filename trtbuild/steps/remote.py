"""A remote cache in the life of a step: pull a stale step's outputs by its key, push what was built
(``Remote.pull_step``, ``Remote.push_step``: the one object that does both, as DVC's ``stage/cache.py``).

The store (``trtbuild.remote``: an OCI registry or an OCI image-layout folder) maps a step key to the
step's lock record and output files. A cache is an accelerator, like Bazel's remote cache: when the
registry is down, refuses the credentials or lacks a blob, the step is built here, one warning names the
store (credentials never), and the run goes on without asking the store again; ``required``
(``--remote-cache-required``, for CI builders) turns that into a failure of the step. An entry that fails
its checks (a blob whose sha256 is not the manifest's, a record that does not match) is one warning for
that step, which is built here; the store stays in use for the others.

Steps are stored under their *declared* key (``remote_key``): the key of their components without
``discovered``, the files an export read that only the export itself can name (the remote analogue of
ccache's direct mode: look up by what is declared, then check what the manifest of the hit lists). A
device that never exported computes the declared key from its own inputs, finds the entry, and uses it
only if every discovered file the record names has, here, the sha256 the record gives it.

What is pulled is trusted only as far as it is checked: the record's key must be the sha256 of its own
components, its declared key must equal the one computed here from this machine's inputs (so an entry
built for another device model, another JetPack or another builder never matches: the engine's key holds
the whole environment fingerprint), every blob's sha256 is checked before it is renamed into place
(``Store.pull``), and the step's own ``verify`` hook runs on it as on a local build.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trtbuild.clock import utc_now
from trtbuild.errors import BuildError
from trtbuild.state.keys import key_of
from trtbuild.steps.context import PULLED, Assessment, Context, Outcome
from trtbuild.steps.remote_keys import discovered_problem, intact, lookup_key, remote_key

if TYPE_CHECKING:
    from trtbuild.remote.store import RemoteEntry, Store
    from trtbuild.steps.step import Step


@dataclass
class Remote:
    """The run's remote cache.

    Attributes:
        store: where steps are looked up, pulled from and pushed to.
        push: push the steps built here (``--no-push``: pull only, for devices in the field).
        required: a cache failure fails the step instead of falling back to a local build.
        warn: receives the one-line warnings (the progress reporter's ``warn``).
        broken: the first failure's message; after it the store is not asked again in this run.
    """

    store: Store
    push: bool = True
    required: bool = False
    warn: Callable[[str], None] = print
    broken: str = ""
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, message: str) -> str:
        """Remember and warn about a cache failure (once per run); returns the message."""
        with self._mutex:
            if not self.broken:
                self.broken = message
                self.warn(f"{self.named(message)}; building locally")
        return message

    def named(self, message: str, step_id: str = "") -> str:
        """``remote cache STORE: [STEP: not used, ]MESSAGE``, the store named once (a ``CacheError`` already
        names it)."""
        prefix = f"remote cache {self.store.display}: "
        what = f"{step_id}: not used, " if step_id else ""
        return prefix + what + message.removeprefix(prefix)

    def lookup(self, key: str) -> RemoteEntry | None:
        """The store's entry for ``key``, ``None`` when absent or the store is unusable.

        Raises:
            CacheError: the store failed and ``required`` is set.
        """
        from trtbuild.remote.store import CacheError

        if self.broken:
            if self.required:
                raise CacheError(self.named(self.broken))
            return None
        try:
            return self.store.lookup(key)
        except CacheError as exc:
            self.failed(str(exc))
            if self.required:
                raise
            return None

    def pull_step(self, step: Step, ctx: Context, assessment: Assessment) -> Outcome | None:
        """Pull ``step``'s outputs by its declared key and record it as ``pulled``; ``None`` when the cache has
        no usable entry (the caller builds).

        Raises:
            CacheError: the cache failed and ``required`` is set.
        """
        from trtbuild.remote.store import CacheError

        assert assessment.components is not None
        declared, without = lookup_key(assessment.components, step.tool)
        started = time.monotonic()
        entry = self.lookup(declared)
        if entry is None:
            return None
        digest = entry.layers[0].digest.removeprefix("sha256:") if len(entry.layers) == 1 else ""
        problem = intact(entry.record, declared, step.kind, digest, without)
        if problem is None:
            problem = discovered_problem(ctx.stats, ctx.project.root, entry.record["components"])
        if problem is not None:
            self.warn(f"{self.named(problem, step.id)}; building locally")
            return None
        try:
            self.store.pull(entry, [step.output])
            if step.verify is not None:
                step.verify(step.output)
        except CacheError as exc:  # this entry (a blob that does not match, or missing): this step builds here
            if self.required:
                raise
            self.warn(f"{self.named(str(exc), step.id)}; building locally")
            return None
        except BuildError as exc:  # the step's own check refused the pulled file
            step.output.unlink(missing_ok=True)
            self.warn(f"{self.named(str(exc), step.id)}; building locally")
            return None
        ctx.assessments.clear()  # a new file: any verdict downstream may change
        recorded = entry.record["outputs"][0]
        output = {
            "path": ctx.project.relative(step.output),
            "sha256": recorded["sha256"],
            "size": step.output.stat().st_size,
        }
        origin = {"store": self.store.display, "manifest": entry.manifest_digest}
        # the lock holds this machine's inputs (equal to the record's but for a host-independent engine's
        # environment) and the files the export discovered, as the record lists them and as checked above
        components = dict(assessment.components)
        for taken in ("discovered", without):  # what only the builder could know: the files it read, its tools
            if taken and taken in entry.record["components"]:
                components[taken] = entry.record["components"][taken]
        pulled = {**entry.record, "model": step.model, "key": key_of(components), "components": components}
        ctx.save_entry(step.id, {**pulled, "outputs": [output], "when": utc_now(), "origin": origin})
        return Outcome(PULLED, assessment.reasons, time.monotonic() - started)

    def push_step(self, step: Step, ctx: Context, entry: dict[str, Any]) -> None:
        """Push ``step``'s lock ``entry`` and output to the cache under its declared key (``push`` on).

        Raises:
            CacheError: the cache failed and ``required`` is set.
        """
        from trtbuild.remote.store import CacheError

        if self.broken:
            return
        record = {name: value for name, value in entry.items() if name not in ("origin",)}
        keys = [remote_key(entry["components"])]
        if step.tool and isinstance(entry["components"].get(step.tool), dict):  # for devices without the tool
            keys.append(remote_key(entry["components"], without=step.tool))
        try:
            for key in keys:
                self.store.push(key, record, [step.output])
        except CacheError as exc:
            self.failed(str(exc))
            if self.required:
                raise
