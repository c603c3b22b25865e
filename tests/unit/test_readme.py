"""The README never lies: every setting is documented, and the commands it names exist."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from cityops.cli.main import app
from cityops.compiled import CompiledSettings
from cityops.core.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README.split("<!-- settings-table", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(CITYOPS_[A-Z0-9_]+)`", table))
    expected = {f"CITYOPS_{name.upper()}"
                for name in [*Settings.model_fields, *CompiledSettings.model_fields]}
    assert expected - documented == set(), "settings missing from README"
    assert documented - expected == set(), "README documents settings that do not exist"


def _same_default(shown: str, default: object) -> bool:
    """Is ``shown`` (the table's text) the setting's ``default``?"""
    if isinstance(default, bool):
        return shown == str(default).lower()
    if isinstance(default, int | float):
        return float(shown.replace(",", "")) == float(default)
    if isinstance(default, Path):
        return Path(shown).expanduser() == default
    return shown == str(default)


def test_every_default_in_the_configuration_table_is_the_setting_s_own() -> None:
    """A default written in back quotes is the setting's; one written "empty" is empty: a
    changed default (the step limit, 500 then 2,000) cannot leave the table behind."""
    table = README.split("<!-- settings-table", 1)[1].split("\n## ", 1)[0]
    fields = {**Settings.model_fields, **CompiledSettings.model_fields}
    rows = re.findall(r"^\| `CITYOPS_([A-Z0-9_]+)` \| ([^|]*) \|", table, flags=re.M)
    assert len(rows) == len(fields)
    checked = 0
    for name, shown in rows:
        default = fields[name.lower()].get_default(call_default_factory=True)
        shown = shown.strip()
        quoted = re.fullmatch(r"`([^`]*)`", shown)
        if quoted is not None:
            assert _same_default(quoted.group(1), default), f"CITYOPS_{name}: README {shown}"
            checked += 1
        elif shown.startswith("empty"):
            secret = getattr(default, "get_secret_value", None)
            empty = secret() if secret is not None else default
            assert not empty, f"CITYOPS_{name}: {default!r}"
            checked += 1
    assert checked >= len(rows) - 1  # the registry's default is described, not written


def test_commands_in_the_command_table_exist() -> None:
    group = typer.main.get_command(app)
    ctx = type(group).context_class(group)
    table = README.split("## The `cityops` command", 1)[1].split("\n## ", 1)[0]
    for first in set(re.findall(r"^\| `cityops ([a-z-]+)", table, flags=re.M)):
        assert group.get_command(ctx, first) is not None, f"cityops {first}"


def test_quick_start_is_the_two_make_targets() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text(encoding="utf-8")
    for target in ("run", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, flags=re.M)


def test_every_dependency_says_why() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    table = README.split("## Dependencies and why", 1)[1]
    deps = project["dependencies"] + project["optional-dependencies"]["test"]
    for dep in deps:
        name = re.split(r"[<>=!~\[ ]", dep, maxsplit=1)[0]
        assert re.search(rf"(^|[ ,|]){re.escape(name)}([ ,|(]|$)", table, flags=re.M), name


def test_links_in_readme_and_docs_stay_inside_the_repository() -> None:
    root = Path(__file__).resolve().parents[2]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # a web address
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(root), f"{page.name} links outside: {target}"
            assert resolved.exists(), f"{page.name} links to a missing file: {target}"


def test_every_benchmark_make_bench_runs_is_named() -> None:
    """``scripts/bench.sh`` runs every ``bench/bench_*.py``: the list says what each prints."""
    root = Path(__file__).resolve().parents[2]
    para = README.split("`make bench` prints", 1)[1].split("`make lint`", 1)[0]
    for script in sorted((root / "bench").glob("bench_*.py")):
        assert f"`{script.name}`" in para, script.name


def test_the_single_host_steps_name_what_compose_needs() -> None:
    """Each variable compose refuses to start without, and the key file it mounts, are in the
    README's single-host steps; Grafana's admin password is the one compose gives it (the
    README once promised a password compose never set)."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    text = (root / "docker-compose.yml").read_text(encoding="utf-8")
    compose = yaml.safe_load(text)
    steps = " ".join(README.split("For a single\nhost:", 1)[1].split("\n## ", 1)[0].split())
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required and {v for v in required if f"`{v}`" not in steps} == set()
    files = [s["file"] for s in compose["secrets"].values() if "file" in s]
    assert files and all(f"`{f}`" in steps for f in files), files
    grafana = compose["services"]["grafana"]["environment"]
    admin = re.fullmatch(r"\$\{([A-Z0-9_]+)[:?-].*\}", grafana["GF_SECURITY_ADMIN_PASSWORD"])
    assert admin is not None
    login = " ".join(README.split("**In Grafana**", 1)[1].split("\n\n", 1)[0].split())
    assert f"password `{admin.group(1)}`" in login
    reader = grafana["CITYOPS_GRAFANA_CLICKHOUSE_USER"]
    reader_password = re.fullmatch(r"\$\{([A-Z0-9_]+)[:?-].*\}",
                                   grafana["CITYOPS_GRAFANA_CLICKHOUSE_PASSWORD"])
    assert reader_password is not None
    assert f"`{reader}` with `{reader_password.group(1)}`" in login
