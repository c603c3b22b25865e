"""Which hot modules run compiled to C (mypyc), and the guard that never runs a stale build.

The worker's per-event domain code (windows, the feed aggregators, the minute spread of
counter reports, the state chain, the replay and dedup bookkeeping) is plain typed Python.
``scripts/build_compiled.py`` (``make compiled``, which ``make run``, ``make test`` and ``make
bench`` call) compiles these modules with mypyc into extension modules beside their sources,
and records each source's SHA-256 in ``cityops/compiled.json``. Python prefers an extension
module to a source file of the same name, so a build that no longer matches its sources would
run old code. ``install`` (called by the package's ``__init__``, before any of them is
imported) therefore checks the record, and when the build is missing, stale, made for another
interpreter, or turned off with ``CITYOPS_COMPILED=0``, every one of them is imported from its
source instead. It is all or none: compiled modules call each other directly, so one stale
module's compiled code would still run through the others.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

#: the modules compiled together (mypyc group ``GROUP``); pure Python, no Faust or Kafka
HOT_MODULES: tuple[str, ...] = (
    "cityops.core.intervals",
    "cityops.streams.windows",
    "cityops.streams.aggregators",
    "cityops.streams.state_chain",
    "cityops.streams.pipeline",
    "cityops.streams.partition_dedup",
)
#: the group's shared library, ``cityops/compiled__mypyc.<tag>.so``
GROUP = "cityops.compiled"
PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "compiled.json"


class CompiledSettings(BaseSettings):
    """Read apart from ``core.settings.Settings``: it decides imports that happen first."""

    # as ``Settings`` reads them (the same prefix and ``.env`` file); other variables ignored
    model_config = SettingsConfigDict(env_prefix="CITYOPS_", env_file=".env",
                                      env_file_encoding="utf-8", extra="ignore")

    #: run the hot modules compiled when a matching build exists (0: always from source)
    compiled: bool = True


#: the words pydantic reads as a boolean (any case)
BOOLEANS = "true, false, 1, 0, yes, no, on, off"


def read_enabled() -> tuple[bool, str | None]:
    """``CITYOPS_COMPILED``, and what is wrong with it when it is not a boolean.

    Read at import, before any command can report a bad value: an invalid one runs the hot
    modules from source (False) and its message is reported by every command that reads the
    settings (``cli.common.settings_or_exit``), instead of a traceback at ``import cityops``.
    """
    try:
        return CompiledSettings().compiled, None
    except ValidationError as exc:
        value = exc.errors()[0].get("input")
        return False, f"CITYOPS_COMPILED={value!r}: not a boolean (allowed: {BOOLEANS})"


def source_of(module: str, root: Path = PACKAGE_DIR.parent) -> Path:
    """The ``.py`` file of a dotted module name under ``root``."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def built_files(module: str, root: Path = PACKAGE_DIR.parent) -> list[Path]:
    """The module's extension files (any interpreter's) beside its source."""
    src = source_of(module, root)
    return sorted(src.parent.glob(f"{src.stem}.*.so"))


@dataclass(frozen=True)
class Status:
    """Whether the compiled build is used, and if not, why not."""

    used: bool
    reason: str


def status(manifest: Path = MANIFEST, root: Path = PACKAGE_DIR.parent,
           modules: Sequence[str] = HOT_MODULES, enabled: bool | None = None) -> Status:
    """Check the build record against the sources and this interpreter."""
    if enabled is None:
        enabled, invalid = read_enabled()
        if invalid is not None:
            return Status(False, f"{invalid}: running from source")
    if not enabled:
        return Status(False, "turned off (CITYOPS_COMPILED=0)")
    if not manifest.is_file():
        return Status(False, "not built (make compiled)")
    try:
        record = json.loads(manifest.read_text())
        built: dict[str, str] = record["modules"]
        tag = record["cache_tag"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Status(False, f"unreadable build record {manifest.name}: {exc}")
    if tag != sys.implementation.cache_tag:
        return Status(False, f"built for {tag}, running {sys.implementation.cache_tag}")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if not source_of(f"{GROUP}__mypyc", root).with_suffix(suffix).is_file():
        return Status(False, f"the group's library {GROUP}__mypyc is missing (make compiled)")
    for module in modules:
        if module not in built:
            return Status(False, f"{module} is not in the build")
        if digest(source_of(module, root)) != built[module]:
            return Status(False, f"{module} changed since the build (make compiled)")
        if not source_of(module, root).with_suffix(suffix).is_file():
            return Status(False, f"{module} has no extension module for this interpreter")
    return Status(True, f"{len(modules)} modules compiled (mypyc)")


class SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the named modules' ``.py`` files, ahead of the extension modules beside them."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = frozenset(modules)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        name = fullname.rpartition(".")[2] + ".py"
        for entry in path or sys.path:
            candidate = Path(entry) / name
            if candidate.is_file():
                return importlib.util.spec_from_file_location(fullname, candidate)
        return None


#: what ``install`` decided for this process (logged by the worker at start)
STATUS = Status(False, "not checked")


def install() -> Status:
    """Import the hot modules from source unless a matching build exists (once per process)."""
    global STATUS
    if any(isinstance(f, SourceFirst) for f in sys.meta_path):
        return STATUS
    STATUS = status()
    if not STATUS.used:
        sys.meta_path.insert(0, SourceFirst(HOT_MODULES))
    return STATUS


def running_compiled(modules: Sequence[str] = HOT_MODULES) -> dict[str, bool]:
    """Module → whether it was imported from an extension module (imports them)."""
    out: dict[str, bool] = {}
    for module in modules:
        loaded = importlib.import_module(module)
        out[module] = str(getattr(loaded, "__file__", "")).endswith(".so")
    return out
