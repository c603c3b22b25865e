"""The compiled hot modules: the same results as their sources, and never a stale build."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cityops.compiled import (
    GROUP,
    HOT_MODULES,
    MANIFEST,
    CompiledSettings,
    SourceFirst,
    Status,
    digest,
    source_of,
    status,
)

ROOT = Path(__file__).resolve().parents[2]


def _fold(compiled: bool) -> dict:
    env = {**os.environ, "CITYOPS_COMPILED": "1" if compiled else "0"}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "compiled_fold.py")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_compiled_and_source_modules_fold_the_four_feeds_alike() -> None:
    """`make test` builds the modules first: this run must use them, and they must give the
    records, outcomes and states the sources give, byte for byte."""
    source = _fold(compiled=False)
    assert not any(source["compiled"].values()), source
    assert source["status"] == "turned off (CITYOPS_COMPILED=0)"
    assert source["records"]["footfall"] > 10_000 and min(source["records"].values()) > 500
    if not CompiledSettings().compiled:  # the suite itself was told to run from source
        assert not status().used
        return
    built = _fold(compiled=True)
    assert all(built["compiled"].values()), f"not running compiled: {built['status']}"
    assert built["records"] == source["records"]
    assert built["digest"] == source["digest"]


SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, group: bool = True) -> Path:
    """A copy of the six sources under ``tmp_path``, an (empty) extension file beside each,
    and the group's library unless ``group`` is False: what a build leaves, as files."""
    for module in HOT_MODULES:
        copy = source_of(module, tmp_path)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source_of(module).read_bytes())
        copy.with_suffix(SUFFIX).write_bytes(b"")
    if group:
        source_of(f"{GROUP}__mypyc", tmp_path).with_suffix(SUFFIX).write_bytes(b"")
    return tmp_path


def _manifest(tmp_path: Path, **changes: object) -> Path:
    record = {"cache_tag": sys.implementation.cache_tag, "mypy": "x",
              "modules": {m: digest(source_of(m)) for m in HOT_MODULES}}
    record.update(changes)
    path = tmp_path / "compiled.json"
    path.write_text(json.dumps(record))
    return path


def test_a_build_that_matches_its_sources_is_used(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree")
    assert status(_manifest(tmp_path), root, enabled=True) == Status(
        True, "6 modules compiled (mypyc)")


def test_a_source_changed_since_the_build_turns_the_build_off(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree")
    manifest = _manifest(tmp_path)
    edited = source_of("cityops.streams.windows", root)
    edited.write_text(edited.read_text() + "# edited after the build\n")
    assert status(manifest, root, enabled=True) == Status(
        False, "cityops.streams.windows changed since the build (make compiled)")


def test_a_build_with_a_file_missing_is_not_used(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", group=False)
    assert status(_manifest(tmp_path), root, enabled=True) == Status(
        False, "the group's library cityops.compiled__mypyc is missing (make compiled)")
    root = _tree(tmp_path / "tree2")
    source_of("cityops.streams.pipeline", root).with_suffix(SUFFIX).unlink()
    assert status(_manifest(tmp_path), root, enabled=True) == Status(
        False, "cityops.streams.pipeline has no extension module for this interpreter")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"cache_tag": "cpython-399"},
     f"built for cpython-399, running {sys.implementation.cache_tag}"),
    ({"modules": {}}, "cityops.core.intervals is not in the build"),
])
def test_a_build_for_something_else_is_not_used(tmp_path: Path, changes: dict,
                                                reason: str) -> None:
    root = _tree(tmp_path / "tree")
    assert status(_manifest(tmp_path, **changes), root, enabled=True) == Status(False, reason)


def test_no_build_or_turned_off_runs_from_source(tmp_path: Path) -> None:
    assert status(tmp_path / "none.json", enabled=True).reason == "not built (make compiled)"
    assert status(MANIFEST, enabled=False).reason == "turned off (CITYOPS_COMPILED=0)"
    (tmp_path / "bad.json").write_text("{not json")
    assert status(tmp_path / "bad.json", enabled=True).reason.startswith(
        "unreadable build record bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"modules": {}}))  # no interpreter tag
    assert status(tmp_path / "old.json", enabled=True).reason.startswith(
        "unreadable build record old.json")


def test_the_source_first_finder_skips_an_extension_beside_the_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale extension module is preferred by Python's own finder: the guard's finder must
    import the source beside it instead."""
    package = tmp_path / "stalepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hot.py").write_text("ANSWER = 'from source'\n")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (package / f"hot{suffix}").write_bytes(b"not an extension module")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError):
        importlib.import_module("stalepkg.hot")
    sys.modules.pop("stalepkg.hot", None)
    finder = SourceFirst(["stalepkg.hot"])
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    assert importlib.import_module("stalepkg.hot").ANSWER == "from source"
    for name in ("stalepkg.hot", "stalepkg"):
        sys.modules.pop(name, None)


def test_the_makefile_rebuilds_when_any_compiled_module_changes() -> None:
    text = (ROOT / "Makefile").read_text()
    block = re.search(r"^HOT := (.*?)\n\S", text, re.S | re.M)
    assert block is not None
    listed = set(block.group(1).replace("\\", " ").split())
    assert listed == {str(source_of(m).relative_to(ROOT)) for m in HOT_MODULES}


def test_the_image_compiles_the_modules_it_imports() -> None:
    """The image installs editable (the in-place build is what gets imported), builds, and
    fails its build when the result would not be used."""
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY scripts/build_compiled.py ./scripts/" in text
    run = text.split("RUN ", 1)[1].split("\nENV", 1)[0]
    steps = [s.strip() for s in run.replace("\\\n", " ").split("&&")]
    install = next(s for s in steps if s.startswith("pip install"))
    assert "-e ." in install and "-c constraints.txt" in install
    build = steps.index("python scripts/build_compiled.py")
    check = next(i for i, s in enumerate(steps) if "c.STATUS.used" in s)
    assert steps.index(install) < build < check


def test_the_build_script_cleans_and_records_its_own_tree(tmp_path: Path) -> None:
    """The build works on the tree its script sits in, even when this interpreter imports
    ``cityops`` from another checkout (an editable install): cleaning a copied tree removes
    that tree's record and extension files, and leaves the imported package's build alone."""
    spec = importlib.util.spec_from_file_location(
        "build_compiled", ROOT / "scripts" / "build_compiled.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    root = _tree(tmp_path / "tree")
    record = root / "cityops" / "compiled.json"
    record.write_text("{}")
    ours = MANIFEST.read_bytes() if MANIFEST.is_file() else None
    assert script.manifest_of(root) == record
    script.clean(root)
    assert not record.exists()
    assert not list(root.rglob("*.so"))
    assert (MANIFEST.read_bytes() if MANIFEST.is_file() else None) == ours


def test_a_bad_compiled_setting_runs_from_source_and_every_command_names_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``CITYOPS_COMPILED`` is read at ``import cityops``: a value that is not a boolean raised
    pydantic's traceback there, before any command could say which variable was wrong."""
    monkeypatch.setenv("CITYOPS_COMPILED", "maybe")
    bad = status(MANIFEST)
    assert not bad.used and "CITYOPS_COMPILED='maybe': not a boolean" in bad.reason
    cityops = str(Path(sys.executable).with_name("cityops"))
    env = {**os.environ, "CITYOPS_COMPILED": "maybe"}
    for args in (["settings"], ["registry"]):
        done = subprocess.run([cityops, *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 2, (args, done.stdout[-2000:], done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        assert ("CITYOPS_COMPILED='maybe': not a boolean (allowed: true, false, 1, 0, yes, no, "
                "on, off)") in " ".join(done.stderr.split()), done.stderr
    env.update(CITYOPS_COMPILED="off", COLUMNS="250")  # a word read as a boolean is fine
    done = subprocess.run([cityops, "settings"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "turned off (CITYOPS_COMPILED=0)" in done.stdout
