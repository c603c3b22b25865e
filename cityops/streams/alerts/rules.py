"""Alert rules: a versioned YAML file of thresholds with hysteresis and minimum durations.

Loaded and validated once at start-up (``load_rules``); a bad file raises ``AlertRulesError``
naming the rule and the problem, so a typo never silently disables an alert.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cityops.core.registry import Registry
from cityops.streams.exceptions import StreamsError

PACKAGED_RULES = Path(__file__).resolve().parent / "rules.yaml"

Severity = Literal["info", "warning", "major", "critical"]
RuleKind = Literal["crowd_density", "carpark_occupancy", "aqi", "incident", "dead_sensor",
                   "dead_letter_rate"]
#: incident severity → value observed by the ``incident`` rule (closed incidents observe 0)
INCIDENT_SEVERITY_RANK: dict[str, float] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class AlertRulesError(StreamsError):
    """The alert rules file is missing or invalid; the message names rule and reason."""

    code = "bad_alert_rules"


class Level(BaseModel):
    """One severity step: fires at ``value ≥ fire``, holds while ``value ≥ clear``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    severity: Severity
    fire: float
    clear: float

    @model_validator(mode="after")
    def _hysteresis(self) -> Level:
        if not self.clear < self.fire:
            raise ValueError(f"{self.severity}: clear ({self.clear}) must be below fire "
                             f"({self.fire}) so the alert cannot flap")
        return self


def _ascending(levels: tuple[Level, ...], where: str) -> None:
    if not levels:
        raise ValueError(f"{where}: at least one level")
    for a, b in itertools.pairwise(levels):
        if not (a.fire < b.fire and a.clear <= b.clear):
            raise ValueError(f"{where}: levels must ascend in fire and clear")


class EscalationStep(BaseModel):
    """Notify the next level when an active alert stays unacknowledged ``after_min``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    level: int = Field(ge=1)
    after_min: float = Field(gt=0)
    notify: str = ""


class Rule(BaseModel):
    """One alert rule: what it watches, its levels and how long conditions must hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9_]{2,64}$")
    kind: RuleKind
    title: str
    subject: str
    unit: str = ""
    min_fire_s: float = Field(0, ge=0)
    min_clear_s: float = Field(0, ge=0)
    levels: tuple[Level, ...]
    by_type: dict[str, tuple[Level, ...]] = Field(default_factory=dict)
    subjects: dict[str, tuple[Level, ...]] = Field(default_factory=dict)
    registry_thresholds: bool = False
    escalation: tuple[EscalationStep, ...] | None = None
    window_s: float = Field(300, gt=0, description="dead_letter_rate: sliding window")
    min_events: int = Field(20, ge=1, description="dead_letter_rate: fewer → not judged")

    @model_validator(mode="after")
    def _check_levels(self) -> Rule:
        _ascending(self.levels, "levels")
        for name, lv in {**self.by_type, **self.subjects}.items():
            _ascending(lv, name)
        return self


class RuleSet(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: str = Field(min_length=1)
    escalation: tuple[EscalationStep, ...] = ()
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        ids = [r.id for r in self.rules]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate rule ids: {sorted(dupes)}")
        return self

    def by_kind(self, kind: str) -> list[Rule]:
        return [r for r in self.rules if r.kind == kind]

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def escalation_for(self, rule: Rule) -> tuple[EscalationStep, ...]:
        steps = rule.escalation if rule.escalation is not None else self.escalation
        return tuple(sorted(steps, key=lambda s: s.after_min))


def levels_for(rule: Rule, subject: str, registry: Registry | None) -> tuple[Level, ...]:
    """Thresholds for one subject: subjects > registry (zones) > by_type (zone kind) > levels."""
    if subject in rule.subjects:
        return rule.subjects[subject]
    base = rule.levels
    zone = registry.zones.get(subject) if registry is not None else None
    if zone is not None and zone.kind in rule.by_type:
        base = rule.by_type[zone.kind]
    if zone is not None and rule.registry_thresholds:
        wanted = {"warning": zone.density_warning_ppm2, "critical": zone.density_critical_ppm2}
        out = []
        for lv in base:
            fire = wanted.get(lv.severity)
            if fire is None:
                out.append(lv)
            else:  # keep the rule's clear/fire ratio for the zone's own fire threshold
                out.append(Level(severity=lv.severity, fire=fire,
                                 clear=round(fire * lv.clear / lv.fire, 6)))
        base = tuple(out)
    return base


def load_rules(path: Path | None = None) -> RuleSet:
    """Read and validate a rules file (the packaged one when ``path`` is None)."""
    path = Path(path) if path is not None else PACKAGED_RULES
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AlertRulesError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AlertRulesError(f"{path}: not valid YAML: {exc}") from None
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        rule = _rule_named(data, err["loc"])
        raise AlertRulesError(f"{path}: {rule}{loc}: {err['msg']}") from None


def _rule_named(data: Any, loc: tuple[Any, ...]) -> str:
    """``rule carpark_full: `` for an error inside the file's second rule (pydantic's location
    says only ``rules.1``), else nothing."""
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(loc[1], int):
        return ""
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list) or not 0 <= loc[1] < len(rules):
        return ""
    rule = rules[loc[1]]
    ident = rule.get("id") if isinstance(rule, dict) else None
    return f"rule {ident}: " if isinstance(ident, str) and ident else ""
