"""The worker's and the sink's garbage-collector settings (``core.gc_tuning``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cityops.core import gc_tuning
from cityops.core.settings import load_settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_freezes_start_up_objects_and_raises_only_the_young_threshold(
        restored_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    gc_tuning.tune(50_000)
    assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_freeze_count() > 0


def test_a_threshold_of_zero_leaves_python_s_settings(restored_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    frozen = gc.get_freeze_count()
    gc_tuning.tune(0)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == frozen


def test_the_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().gc_gen0_threshold == 50_000
    monkeypatch.setenv("CITYOPS_GC_GEN0_THRESHOLD", "0")
    assert load_settings().gc_gen0_threshold == 0
