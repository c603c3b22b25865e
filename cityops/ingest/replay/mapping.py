"""Mapping a file's row to a feed contract's JSON: rename, constants, types, derive, re-base.

Column types come from the pydantic model's fields (``int`` and ``float`` fields, optional or
not), so CSV text such as ``"35"`` becomes the number the contract expects.
"""

from __future__ import annotations

import re
import types
import typing
from datetime import datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal

from pydantic.fields import FieldInfo

from cityops.core.feeds import FEED_MODELS
from cityops.ingest.exceptions import ReplayError

#: the field naming the site of each feed; a missing ``source`` is taken from it
_SITE_FIELD = {"parking": "carpark_id", "air": "station_id", "incidents": "zone_id"}
_INT_RE = re.compile(r"^[+-]?\d+$")
#: fields the mapper fills in when the file lacks them
DERIVABLE = frozenset({"event_id", "source", "schema_version"})


def _number_kind(annotation: Any) -> type | None:
    """``int`` or ``float`` when every non-None member of the annotation is that type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
    elif origin is Literal:
        values = typing.get_args(annotation)
        members = [int] if values and all(type(v) is int for v in values) else []
    else:
        members = [annotation]
    members = [typing.get_args(m)[0] if typing.get_origin(m) is Annotated else m
               for m in members]
    kinds = {m for m in members if m is int or m is float}
    if len(kinds) != 1 or len(kinds) != len(members):
        return None
    return kinds.pop()


def field_kinds(feed: str) -> dict[str, type]:
    """Numeric fields of ``feed``'s contract and their type, read from the model's fields."""
    fields: dict[str, FieldInfo] = FEED_MODELS[feed].model_fields
    return {name: kind for name, f in fields.items()
            if (kind := _number_kind(f.annotation)) is not None}


def _num(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


class RecordMapper:
    """Turns a file row (dict) into contract JSON: rename, constants, types, derive, re-base."""

    def __init__(self, feed: str, mapping: dict[str, str] | None = None,
                 constants: dict[str, Any] | None = None, naive_tz: tzinfo | None = None,
                 rebase_to: datetime | None = None) -> None:
        if feed not in FEED_MODELS:
            raise ReplayError(f"unknown feed {feed!r} (allowed: {', '.join(FEED_MODELS)})")
        unknown = [f for f in list(mapping or {}) + list(constants or {})
                   if f not in FEED_MODELS[feed].model_fields and f not in ("lat", "lon", "crs")]
        if unknown:
            raise ReplayError(f"mapping names fields the {feed} contract does not have: "
                              f"{', '.join(unknown)}")
        self.feed = feed
        self.mapping = dict(mapping or {})  # contract field -> file column
        self.constants = dict(constants or {})
        self.kinds = field_kinds(feed)
        self.naive_tz = naive_tz
        self.rebase_to = rebase_to
        self.offset: timedelta | None = None

    @property
    def transforms(self) -> bool:
        """Whether a record must be parsed and rebuilt (else JSON lines may go byte for byte)."""
        return bool(self.mapping or self.constants or self.rebase_to or self.naive_tz)

    def check_columns(self, columns: list[str]) -> None:
        """Fail early when a required field has no column, mapping or constant."""
        renamed = {col: f for f, col in self.mapping.items()}
        have = {renamed.get(c, c) for c in columns} | set(self.constants)
        model = FEED_MODELS[self.feed]
        required = [n for n, f in model.model_fields.items()
                    if f.is_required() and n not in DERIVABLE]
        missing = [n for n in required if n not in have]
        if self.feed not in _SITE_FIELD and "source" not in have:
            missing.insert(0, "source")
        if missing:
            raise ReplayError(
                f"required {self.feed} fields without a column: {', '.join(missing)}; "
                f"file columns: {', '.join(columns) or '(none)'}; map one with "
                f"--map FIELD=COLUMN or set it with --set FIELD=VALUE")

    def _coerce(self, name: str, value: Any) -> Any:
        kind = self.kinds.get(name)
        if isinstance(value, str):
            text = value.strip()
            if kind is int and _INT_RE.match(text):
                return int(text)
            if kind is float:
                try:
                    return float(text)
                except ValueError:
                    return value
            return text
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)  # pandas turns int columns with gaps into floats
        if isinstance(value, datetime):
            if value.tzinfo is None and self.naive_tz is not None:
                value = value.replace(tzinfo=self.naive_tz)
            return value.isoformat()
        if hasattr(value, "item"):  # numpy scalars
            return self._coerce(name, value.item())
        return value

    def map(self, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        renamed = {col: f for f, col in self.mapping.items()}
        for col, value in row.items():
            if value is None or (isinstance(value, str) and value.strip() == "") or (
                    isinstance(value, float) and value != value):  # NaN
                continue
            name = renamed.get(col, col)
            if name in self.mapping and self.mapping[name] != col:
                continue  # this column's name is a field that maps to another column
            out[name] = self._coerce(name, value)
        for k, v in self.constants.items():
            out.setdefault(k, self._coerce(k, v))
        lat, lon = out.pop("lat", None), out.pop("lon", None)
        crs = out.pop("crs", None)
        if lat is not None and lon is not None and "position" not in out:
            pos = {"lat": _num(lat), "lon": _num(lon)}
            if crs:
                pos["crs"] = str(crs).upper().replace("-", "")
            out["position"] = pos
        self._fix_time(out)
        self._derive(out)
        return out

    def _fix_time(self, out: dict[str, Any]) -> None:
        t = out.get("event_time")
        if not isinstance(t, str):
            return
        try:
            when = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return  # left as is: the contract rejects it with bad_timestamp
        if when.tzinfo is None:
            if self.naive_tz is None:
                return  # naive_timestamp rejection
            when = when.replace(tzinfo=self.naive_tz)
        if self.rebase_to is not None:
            if self.offset is None:
                self.offset = self.rebase_to - when
            when = when + self.offset
        out["event_time"] = when.isoformat()

    def _derive(self, out: dict[str, Any]) -> None:
        site = _SITE_FIELD.get(self.feed)
        if "source" not in out and site and isinstance(out.get(site), str):
            out["source"] = out[site]
        if "event_id" not in out:
            if self.feed == "incidents" and "incident_id" in out and "status" in out:
                out["event_id"] = f"{out['incident_id']}:{out['status']}"
            elif isinstance(out.get("source"), str) and isinstance(out.get("event_time"), str):
                try:
                    epoch = int(datetime.fromisoformat(out["event_time"]).timestamp())
                    out["event_id"] = f"{out['source']}:{epoch}"
                except ValueError:
                    pass


def parse_assignments(items: list[str] | None, what: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` → ``{"a": "b", "c": "d"}`` (CLI ``--map`` / ``--set``)."""
    out: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ReplayError(f"{what} {part!r}: expected FIELD=VALUE")
            out[name.strip()] = value.strip()
    return out
