"""A fresh machine installs what CI tested: every distribution in the environment is pinned.

``make`` installs with ``-c constraints.txt``, but a constraint only pins what it names: a new
dependency of a dependency (mypy's ``ast-serialize`` was one) came in at whatever version was
newest that day. This fails until its pin is added.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the project itself, and setuptools (only the build of its editable install; pip's build
#: isolation takes it from pyproject's ``build-system``, which constraints do not reach)
UNPINNED = {"cityops", "setuptools"}


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()  # PEP 503


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line)
        assert m is not None, f"constraints.txt: not an exact pin: {line!r}"
        pins[_name(m.group(1))] = m.group(3)
    return pins


def test_every_installed_distribution_is_pinned_at_its_installed_version() -> None:
    pins = _pins()
    installed = {_name(d.metadata["Name"]): d.version for d in md.distributions()}
    assert set(installed) - set(pins) - UNPINNED == set(), "installed but not pinned"
    differs = {n: (pins[n], v) for n, v in installed.items() if n in pins and pins[n] != v}
    assert differs == {}, "pinned (left) but installed (right)"
