"""Shared: the generated bundle of the packaged registry and rules."""

from __future__ import annotations

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.dashboards.provisioning import Bundle, generate
from cityops.streams.alerts.rules import RuleSet, load_rules


@pytest.fixture(scope="session")
def rules() -> RuleSet:
    return load_rules()


@pytest.fixture(scope="session")
def bundle(settings: Settings, registry: Registry, rules: RuleSet) -> Bundle:
    return generate(settings, registry, rules)
