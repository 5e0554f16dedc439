"""trtbuild's modules form layers without cycles: a module imports only modules of its own layer or of the
layers below it, and a child process's modules never import the parent's.

Every module of ``trtbuild/`` (and the built-in recipes, ``recipes/`` installed as ``trtbuild.recipes``)
is parsed with ``ast``; every ``import`` counts, at module level, inside functions and under
``TYPE_CHECKING``. A package's own ``__init__`` run by importing one of its modules is not an arrow: they
are empty, except ``trtbuild/__init__.py``, whose imports are lazy (PEP 562).

``LAYERS`` is the table, written once here; docs/architecture.md mirrors it (``test_the_docs_mirror_the_table``).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Where each top-level package's files are (``pyproject.toml``: ``trtbuild.recipes`` is ``recipes/``).
PACKAGE_DIRS = {"trtbuild": REPO / "trtbuild", "trtbuild.recipes": REPO / "recipes"}

#: Highest layer first. ``name`` is one module; ``name.*`` is a package and everything in it. A module is
#: in the layer of its most specific entry (a name beats a ``.*``, a longer ``.*`` a shorter one).
LAYERS: list[tuple[str, list[str]]] = [
    (
        "entry",
        ["trtbuild.fastpath", "trtbuild.__main__", "trtbuild"],
    ),  # the package itself: trtbuild.engine() for applications, loaded lazily from deploy
    ("cli", ["trtbuild.cli.*", "trtbuild.deploy"]),
    ("ops", ["trtbuild.ops.*"]),  # one module per command; ops/project.py opens a project for all of them
    ("graph", ["trtbuild.graph.*"]),
    ("steps", ["trtbuild.steps.*"]),
    (
        "state",
        ["trtbuild.state.*", "trtbuild.env.*", "trtbuild.manifest.*", "trtbuild.sources.*", "trtbuild.remote.*"],
    ),  # remote: the fleet cache's store (OCI registry, OCI layout); the steps decide when to use it
    (
        "children",
        [
            "trtbuild.builder.*",
            "trtbuild.export.*",
            "trtbuild.precision.*",
            "trtbuild.recipes.*",
            "trtbuild.ssh.*",
            "trtbuild.manifest.schema",
            "trtbuild.manifest.precision_fields",
            "trtbuild.manifest.strict",
            "trtbuild.manifest.remote_fields",
        ],
    ),  # the schema modules: pure pydantic data, imports nothing else of trtbuild; children parse requests with it
    ("isolation", ["trtbuild.isolation"]),
    (
        "base",
        [
            "trtbuild.files",
            "trtbuild.errors",
            "trtbuild.childside",
            "trtbuild.child_requests",
            "trtbuild.results",
            "trtbuild.locate",
            "trtbuild.clock",
            "trtbuild.stampfile",
            "trtbuild.packages",
            "trtbuild.reasons",
            "trtbuild.statsig",
        ],
    ),
]
#: The naming rule that says which side of the process boundary a module is on: a module a child process
#: runs (``python -m``, ``childside.child_main``) is named ``child`` or ``*_child``, and no other is.
CHILD_ENTRY = re.compile(r"(^|_)child$")
#: What a child may import, directly or not: its own layer and the base (not ``isolation``, the parent's side).
CHILD_LAYERS = {"children", "base"}
RANK = {name: index for index, (name, _) in enumerate(LAYERS)}


def module_files() -> dict[str, Path]:
    """Every module name of trtbuild -> its file."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = module_files()
#: The modules a child process runs, by the naming rule (``test_child_entries_follow_the_naming_rule``).
CHILD_ENTRIES = sorted(module for module in MODULES if CHILD_ENTRY.search(module.rpartition(".")[2]))


def layer_of(module: str) -> str | None:
    """The layer of ``module``: its most specific entry in ``LAYERS``; ``None`` when no entry covers it."""
    best: tuple[int, str] | None = None
    for layer, entries in LAYERS:
        for entry in entries:
            if entry == module:
                specificity = 1_000
            elif entry.endswith(".*") and (module == entry[:-2] or module.startswith(entry[:-1])):
                specificity = len(entry)
            else:
                continue
            if best is None or specificity > best[0]:
                best = (specificity, layer)
    return best[1] if best else None


def _known(name: str) -> str | None:
    """The trtbuild module ``name`` names, or its nearest enclosing package that exists."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imported_names(module: str) -> set[str]:
    """Every module name ``module`` imports anywhere in its file, relative imports resolved (``from P
    import N`` gives ``P.N`` when that is a trtbuild module, else ``P``)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(names)
    return found


def imports_of(module: str) -> set[str]:
    """The trtbuild modules ``module`` imports anywhere in its file."""
    found = {known for name in imported_names(module) if name.split(".")[0] == "trtbuild" and (known := _known(name))}
    found.discard(module)
    return found


def import_graph() -> nx.DiGraph:
    """module -> module it imports, over every trtbuild module."""
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module in MODULES:
        graph.add_edges_from((module, imported) for imported in imports_of(module))
    return graph


GRAPH = import_graph()


def test_every_module_has_a_layer_and_every_named_module_exists() -> None:
    assert not [module for module in MODULES if layer_of(module) is None], "add them to LAYERS"
    named = [entry for _, entries in LAYERS for entry in entries if not entry.endswith(".*")]
    assert not [entry for entry in named if entry not in MODULES], "LAYERS names modules that no longer exist"


def test_no_import_cycle() -> None:
    cycles = [sorted(component) for component in nx.strongly_connected_components(GRAPH) if len(component) > 1]
    assert not cycles, "\n".join(" -> ".join(edge[0] for edge in nx.find_cycle(GRAPH.subgraph(c))) for c in cycles)


def test_modules_import_only_their_layer_and_the_layers_below() -> None:
    upward = [
        f"{module} ({layer_of(module)}) imports {imported} ({layer_of(imported)})"
        for module, imported in GRAPH.edges
        if RANK[layer_of(imported) or ""] < RANK[layer_of(module) or ""]
    ]
    assert not upward, "\n".join(sorted(upward))


@pytest.mark.parametrize("entry", CHILD_ENTRIES)
def test_a_child_never_imports_the_parents_modules(entry: str) -> None:
    assert entry in MODULES
    reached = nx.descendants(GRAPH, entry)
    parent = sorted(module for module in reached if layer_of(module) not in CHILD_LAYERS)
    assert not parent, f"{entry} imports, directly or not: {parent}"


def test_child_entries_follow_the_naming_rule() -> None:
    """A module is named ``child`` / ``*_child`` exactly when it is a child process's entry (it runs
    ``child_main`` under ``__main__``), and no parent-side module imports one: the parent starts children,
    it never runs their code in its own process."""
    runs_child_main = {
        module
        for module, path in MODULES.items()
        if re.search(r'^if __name__ == "__main__":\n\s+sys\.exit\(child_main\(', path.read_text(), re.MULTILINE)
    }
    assert runs_child_main == set(CHILD_ENTRIES) and len(CHILD_ENTRIES) == 5, sorted(runs_child_main)
    parent_imports = sorted(
        f"{module} imports {imported}"
        for module, imported in GRAPH.edges
        if imported in CHILD_ENTRIES and layer_of(module) not in CHILD_LAYERS
    )
    assert not parent_imports, parent_imports


def test_the_no_op_fast_path_reaches_only_the_standard_library() -> None:
    """What ``fastpath`` imports before it hands over to the CLI: trtbuild modules that import nothing but the
    standard library (tests/test_build.py checks a real no-op run's modules)."""
    before_cli = GRAPH.copy()
    before_cli.remove_edge("trtbuild.fastpath", "trtbuild.cli.main")
    reached = {"trtbuild.fastpath", *nx.descendants(before_cli, "trtbuild.fastpath")}
    assert "trtbuild.stampfile" in reached and "trtbuild.state.freshstamp" not in reached
    foreign = {
        f"{module}: {name}"
        for module in reached
        for name in imported_names(module)
        if name.split(".")[0] not in (*sys.stdlib_module_names, "trtbuild")
    }
    assert not foreign, sorted(foreign)


def test_the_checks_see_imports_inside_functions() -> None:
    """The parser is not blind: lazy and aliased imports count as arrows."""
    assert "trtbuild.cli.main" in GRAPH.successors("trtbuild.fastpath")  # inside main()
    assert "trtbuild.precision.samples" in GRAPH.successors("trtbuild.steps.precision")  # inside a function
    assert "trtbuild.export.canonical" in GRAPH.successors("trtbuild.export.child")
    assert "trtbuild.precision.accuracy" in GRAPH.successors("trtbuild.precision.child")  # from P import M


def test_the_docs_mirror_the_table() -> None:
    """docs/architecture.md's layer table has the same layers, in the same order, with the same entries."""
    text = (REPO / "docs/architecture.md").read_text()
    rows = re.findall(r"^\| *(\w+) *\|([^|]*)\|", text.split("## Layers", 1)[1], flags=re.MULTILINE)
    documented = [(layer, re.findall(r"`([\w.*]+)`", entries)) for layer, entries in rows if layer != "layer"]
    assert documented == LAYERS


def structure() -> str:
    """The structure figures of today's tree, as docs/architecture.md states them."""
    cycles = [c for c in nx.strongly_connected_components(GRAPH) if len(c) > 1]
    upward = [1 for module, imported in GRAPH.edges if RANK[layer_of(imported) or ""] < RANK[layer_of(module) or ""]]
    lines = [len(path.read_text().splitlines()) for path in MODULES.values()]
    return (
        f"{len(MODULES)} modules in {len(LAYERS)} layers, {GRAPH.number_of_edges()} imports between them; "
        f"{len(cycles)} import cycles, {len(upward)} imports upward; {len(CHILD_ENTRIES)} child entries; "
        f"the longest module {max(lines)} lines"
    )


def test_the_docs_state_todays_structure() -> None:
    """The figures in docs/architecture.md are today's (printed here; update the docs when they change)."""
    figures = structure()
    print(figures)
    assert f"Today: {figures}." in " ".join((REPO / "docs/architecture.md").read_text().split())


#: Modules allowed past 400 lines: data tables (compat's feature table, with NVIDIA's source per decision).
LONG_MODULES = {"trtbuild.builder.compat"}


def test_no_function_over_60_lines_and_no_module_over_400() -> None:
    """A function fits on a screen and a module is one concept (docs/architecture.md)."""
    long = []
    for module, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > 400 and module not in LONG_MODULES:
            long.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long
