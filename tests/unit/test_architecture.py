"""The data flow is the import rule: a module imports only from its left and from the core."""

from __future__ import annotations

import ast
from pathlib import Path

import cityops

ORDER = ["ingest", "streams", "warehouse", "dashboards"]
BESIDE = {"deploy", "cli"}  # may import anything
ROOT = Path(cityops.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.startswith("cityops.")}


def test_modules_import_only_leftwards() -> None:
    violations = []
    for path in ROOT.rglob("*.py"):
        area = path.relative_to(ROOT).parts[0]
        if area in BESIDE or area not in [*ORDER, "core"]:
            continue
        allowed = {"core"} | set(ORDER[: ORDER.index(area) + 1] if area in ORDER else [])
        for name in _imports(path):
            target = name.split(".")[1]
            if target in ("exceptions",):
                continue
            if target not in allowed:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not violations, "\n".join(violations)


def test_core_imports_no_area() -> None:
    for path in (ROOT / "core").rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[1] in ("core", "exceptions"), f"{path} imports {name}"


def test_domain_logic_does_not_import_faust_or_kafka() -> None:
    domain = [ROOT / "core"] + [ROOT / "streams" / n for n in ("aqi.py", "windows.py",
                                                              "dedup.py", "alerts")]
    for base in domain:
        for path in ([base] if base.is_file() else base.rglob("*.py")):
            if not path.exists():
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for m in mods:
                    assert not m.startswith(("faust", "kafka", "aiokafka")), f"{path}: {m}"
