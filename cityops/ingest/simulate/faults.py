"""Fault injection for testing the pipeline: what real sensor networks do to a stream.

A ``FaultPlan`` says how often each fault happens; the engine applies it deterministically
(its own RNG from the seed), so a failing test can be replayed exactly.

=================  ==========================================================================
fault              effect on the emitted stream
=================  ==========================================================================
duplicates         the same event (same ``event_id``, same bytes) is sent again a little later
late               the event is held back ``late_s`` seconds of simulated time (beyond the
                   pipeline's allowed lateness by default)
out_of_order       the event is held back ½ to 1 × ``out_of_order_s``, so it arrives
                   after younger events of the same source
malformed          (wire bytes only) the record is corrupted: broken JSON, missing or
                   unexpected field, wrong type, negative count, naive timestamp, non-UTF-8
                   bytes, unknown site id, unknown enum value, a JSON array
dead_sensors       that many sensors (counters, car parks, micro-stations) stop reporting for
                   good after ``dead_after`` of the simulated range
clock_skew_s       one sensor's clock runs ahead (or behind, if negative) by that many seconds:
                   its ``event_time`` and ``event_id`` carry the skewed time
=================  ==========================================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

import orjson

from cityops.ingest.exceptions import SimulationError

#: Kinds of malformed records, each aimed at one contract reason code.
MALFORMED_KINDS: tuple[str, ...] = (
    "bad_json", "missing_field", "unexpected_field", "wrong_type", "negative_count",
    "naive_timestamp", "bad_encoding", "unknown_site", "unknown_enum", "not_an_object",
)

_ALIASES = {"dup": "duplicates", "duplicate": "duplicates", "ooo": "out_of_order",
            "reorder": "out_of_order", "bad": "malformed", "dead": "dead_sensors",
            "skew": "clock_skew_s", "clock_skew": "clock_skew_s"}


@dataclass(frozen=True)
class FaultPlan:
    """Probabilities (per event) and settings of injected faults; all off by default."""

    duplicates: float = 0.0
    late: float = 0.0
    late_s: float = 900.0
    out_of_order: float = 0.0
    out_of_order_s: float = 60.0
    malformed: float = 0.0
    dead_sensors: int = 0
    dead_after: float = 0.25
    clock_skew_s: float = 0.0
    skew_sensor: str | None = None

    def __post_init__(self) -> None:
        for name in ("duplicates", "late", "out_of_order", "malformed", "dead_after"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise SimulationError(f"fault {name}={v}: must be a probability in [0, 1]")
        if self.late + self.out_of_order > 1.0:
            raise SimulationError("late + out_of_order must not exceed 1")
        if self.late_s <= 0 or self.out_of_order_s <= 0:
            raise SimulationError("late_s and out_of_order_s must be positive")
        if self.dead_sensors < 0:
            raise SimulationError("dead_sensors must be ≥ 0")

    @property
    def any(self) -> bool:
        return any([self.duplicates, self.late, self.out_of_order, self.malformed,
                    self.dead_sensors, self.clock_skew_s])

    @classmethod
    def parse(cls, text: str | None) -> FaultPlan:
        """``"dup=0.01,late=0.005,ooo=0.02,malformed=0.01,dead=2,skew=600"``; ``"all"`` gives
        a moderate mix of every fault; empty or ``"none"`` gives no faults."""
        if not text or text.strip().lower() == "none":
            return cls()
        if text.strip().lower() == "all":
            return cls(duplicates=0.01, late=0.005, out_of_order=0.01, malformed=0.01,
                       dead_sensors=1, clock_skew_s=600.0)
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            name = _ALIASES.get(name.strip(), name.strip())
            if not sep or name not in known:
                raise SimulationError(
                    f"bad fault {part!r}; use name=value with names "
                    f"{', '.join(sorted(known))} (or dup, ooo, dead, skew)")
            raw = raw.strip()
            try:
                if name == "skew_sensor":
                    values[name] = raw
                elif name == "dead_sensors":
                    values[name] = int(raw)
                else:
                    values[name] = float(raw)
            except ValueError:
                raise SimulationError(f"fault {name}: {raw!r} is not a number") from None
        return cls(**values)  # type: ignore[arg-type]


def corrupt(value: bytes, kind: str, r: random.Random) -> bytes:
    """A malformed variant of one wire record (the JSON of a valid event)."""
    if kind == "bad_json":
        return value[: max(1, len(value) // 2)]
    if kind == "bad_encoding":
        return value[:-1] + b',"note":"\xff\xfe caf\xe9"}'
    if kind == "not_an_object":
        return b"[" + value + b"]"
    data = orjson.loads(value)
    if kind == "missing_field":
        data.pop("event_time", None)
    elif kind == "unexpected_field":
        data["vendor_extra"] = r.randrange(1000)
    elif kind == "wrong_type":
        for k in ("entries", "occupied", "pm25_ugm3", "severity"):
            if k in data:
                data[k] = {"value": data[k]}
                break
    elif kind == "negative_count":
        for k in ("entries", "exits", "occupied", "capacity", "interval_s", "averaging_s"):
            if k in data:
                data[k] = -1 - r.randrange(50)
                break
        else:
            data["pm25_ugm3"] = -5.0
    elif kind == "naive_timestamp":
        data["event_time"] = data["event_time"][:19]
    elif kind == "unknown_site":
        for k in ("zone_id", "carpark_id", "station_id"):
            if k in data:
                data[k] = "no_such_site"
                break
    elif kind == "unknown_enum":
        if "status" in data:
            data["status"] = "exploded"
        else:
            data["schema_version"] = 99
    return orjson.dumps(data)
