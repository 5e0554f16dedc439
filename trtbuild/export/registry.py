"""Finding recipes: the project's ``recipes/<name>.py`` first, then trtbuild's built-in ``trtbuild.recipes``.

A recipe is a Python module with this interface (see docs/recipes.md)::

    VERSION: int                      # bump when the module's output changes for the same inputs
    EXTRA: str                        # the pip extra that installs its exporters: trtbuild[EXTRA]
    REQUIRES: tuple[str, ...]         # modules it imports (checked before running, by name only)
    EXPORTERS: tuple[str, ...]        # distributions whose versions enter the export key
    NEEDS_PIN: bool                   # loading the source can run code (pickles): sha256 pin required
    class Params(pydantic.BaseModel)  # its parameters in builds.yaml
    def export(source: Path, output: Path, params: Params, context: ExportContext) -> None

Modules must import their heavy dependencies inside ``export`` so that loading a manifest stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from trtbuild.errors import ManifestError
from trtbuild.packages import installed_versions

BUILTIN_PACKAGE = "trtbuild.recipes"
PROJECT_PACKAGE = "trtbuild_project_recipes"
PROJECT_FOLDER = "recipes"
INTERFACE = ("VERSION", "EXTRA", "REQUIRES", "EXPORTERS", "NEEDS_PIN", "Params", "export")


@dataclass(frozen=True)
class ExportContext:
    """What a recipe's ``export`` gets besides source, output and params.

    Attributes:
        workdir: an empty temporary folder, removed afterwards.
        project_root: the manifest's folder (the torch recipe imports model code from its ``recipes/``).
    """

    workdir: Path
    project_root: Path


@dataclass(frozen=True)
class Recipe:
    """A loaded recipe module and the file its code lives in (hashed into the export key)."""

    name: str
    module: ModuleType
    file: Path

    def missing_modules(self) -> list[str]:
        """The modules of ``REQUIRES`` that cannot be found (nothing is imported)."""
        return [name for name in self.module.REQUIRES if importlib.util.find_spec(name) is None]

    def exporter_versions(self) -> dict[str, str | None]:
        """Installed version of every distribution in ``EXPORTERS``, from package metadata."""
        return installed_versions(*self.module.EXPORTERS)

    def install_hint(self) -> str:
        """What to run to get the missing exporters."""
        return f"pip install 'trtbuild[{self.module.EXTRA}]'"


def _load_file(name: str, file: Path) -> ModuleType:
    module_name = f"{PROJECT_PACKAGE}.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_recipe(name: str, project_root: Path) -> Recipe:
    """The recipe ``name``: ``<project_root>/recipes/<name>.py`` if present, else the built-in one.

    Raises:
        ManifestError: no such recipe, or the module lacks part of the interface.
    """
    file = project_root / PROJECT_FOLDER / f"{name}.py"
    if file.is_file():
        module = _load_file(name, file)
    else:
        try:
            module = importlib.import_module(f"{BUILTIN_PACKAGE}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{BUILTIN_PACKAGE}.{name}":
                raise
            raise ManifestError(f"no recipe {name!r}: not in {project_root / PROJECT_FOLDER} nor built in") from None
        file = Path(module.__file__ or "")
    missing = [attribute for attribute in INTERFACE if not hasattr(module, attribute)]
    if missing:
        raise ManifestError(f"{file}: recipe {name!r} lacks {', '.join(missing)} (see docs/recipes.md)")
    return Recipe(name=name, module=module, file=file)
