"""Compile the worker's hot modules with mypyc (``make compiled``); see ``cityops.compiled``.

Builds ``cityops.compiled.HOT_MODULES`` as one mypyc group into extension modules beside
their sources (``build_ext --inplace``), type-checked with the project's mypy settings, then
writes ``cityops/compiled.json``: each source's SHA-256 and the interpreter's tag, which
``cityops.compiled.install`` checks at every start. Old extension files and the record are
removed first, so a failed build leaves the pure-Python modules in use, never a mix.

    .venv/bin/python scripts/build_compiled.py

With ``CITYOPS_COMPILED=0`` it only removes a previous build. It needs a C compiler and the
interpreter's headers; without them it stops with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import mypy.version
import structlog
from setuptools import Distribution

from cityops.compiled import (
    GROUP,
    HOT_MODULES,
    MANIFEST,
    PACKAGE_DIR,
    built_files,
    digest,
    read_enabled,
    source_of,
)

log = structlog.get_logger("build_compiled")
ROOT = Path(__file__).resolve().parent.parent


def manifest_of(root: Path) -> Path:
    """The build record of the tree at ``root``: the one built here, whichever ``cityops``
    this interpreter imports (an editable install may point at another checkout)."""
    return root / MANIFEST.relative_to(PACKAGE_DIR.parent)


def clean(root: Path) -> None:
    """Remove the record first (the sources run from then on), then every built file."""
    manifest_of(root).unlink(missing_ok=True)
    group_lib = source_of(GROUP, root)
    for path in [*group_lib.parent.glob(f"{group_lib.stem}__mypyc.*.so"),
                 *(f for m in HOT_MODULES for f in built_files(m, root))]:
        path.unlink()


def build(root: Path) -> None:
    from mypyc.build import mypycify  # imported here: only a real build needs it

    sources = [str(source_of(m, root).relative_to(root)) for m in HOT_MODULES]
    digests = {m: digest(source_of(m, root)) for m in HOT_MODULES}
    temp = root / "build" / "compiled"
    extensions = mypycify([*sources, "--config-file", str(root / "pyproject.toml")],
                          opt_level="3", group_name=GROUP, target_dir=str(temp / "c"))
    dist = Distribution({"name": "cityops-compiled", "ext_modules": extensions})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True  # type: ignore[attr-defined]
    cmd.build_temp = str(temp / "obj")  # type: ignore[attr-defined]
    dist.run_command("build_ext")
    changed = [m for m in HOT_MODULES if digest(source_of(m, root)) != digests[m]]
    if changed:  # edited while it compiled: the record would vouch for code never built
        raise SystemExit(f"sources changed during the build: {', '.join(changed)}; run again")
    manifest_of(root).write_text(json.dumps({
        "cache_tag": sys.implementation.cache_tag, "mypy": mypy.version.__version__,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "modules": digests}, indent=2) + "\n")


def main() -> int:
    os.chdir(ROOT)  # ``build_ext --inplace`` places each module by its dotted name from here
    clean(ROOT)
    enabled, invalid = read_enabled()
    if invalid is not None:
        log.error("compiled.bad_setting", error=invalid)
        return 2
    if not enabled:
        log.info("compiled.off", reason="CITYOPS_COMPILED=0: the modules run from source")
        return 0
    if shutil.which(os.environ.get("CC", "cc")) is None:
        log.error("compiled.no_compiler",
                  fix="install a C compiler (apt-get install gcc) or set CITYOPS_COMPILED=0")
        return 1
    started = time.monotonic()
    log.info("compiled.building", modules=len(HOT_MODULES), group=GROUP)
    build(ROOT)
    log.info("compiled.built", modules=len(HOT_MODULES),
             manifest=str(manifest_of(ROOT).relative_to(ROOT)),
             seconds=round(time.monotonic() - started, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
