"""Derived records read by msgspec structs made from their models: the sink's fast path.

The sink stores every record of the derived topics (footfall windows, car-park states, AQI,
incident counts, alerts, dead letters, late events). Read with the model
(``model_validate_json``, then ``rows.record_row``) a car-park state cost 5.4 µs and a
footfall window 6.5, most of it pydantic's validation; the record id's ISO time (1.1 µs) is
paid either way. A drain stores more than one derived record per event: a tenth of the
sink's CPU went there.

``struct_for(model)`` builds, from the model's own fields, a msgspec struct with the same
names, types, bounds and defaults (unknown fields refused, as the models refuse extras) and
the model's methods (``record_id`` and what it calls). ``decode_record`` reads a record with
it, and ``rows.fast_record_row`` makes from that the row ``record_row`` makes from the model;
``None`` means: read the record with the model, which also says why a record is refused.
The struct may only *accept* what the model accepts, with the same values:

* msgspec is stricter than pydantic's lax mode (no ``1.0`` or ``"5"`` for an integer, no
  ``NaN``, no number for a time, no time without seconds): those records go to the model;
* a time with more than six decimals is rounded by msgspec and cut by pydantic: such a
  record goes to the model (``_LONG_FRACTION``);
* text with a backslash (escapes, lone surrogates) goes to the model;
* a model whose fields msgspec cannot mirror (a type or a constraint not listed here) has no
  struct, and all its records go to the model.

``tests/unit/warehouse/test_rows_without_dump.py`` compares both on every record the stream
makes from simulated feeds and on mutations of them.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, cast, get_args, get_origin

import msgspec
import msgspec.structs
from pydantic import AwareDatetime, BaseModel
from pydantic_core import PydanticUndefined

from cityops.core.deadletter import DerivedRecord

#: a time's fraction of seconds with more than six digits (msgspec rounds, pydantic cuts)
_LONG_FRACTION = re.compile(rb":\d\d[.,]\d{7}")

#: pydantic's numeric bounds (``Field(ge=0)`` holds ``annotated_types.Ge(ge=0)``), by name
_BOUNDS = ("ge", "gt", "le", "lt")
_SCALARS = (str, int, float, bool)


def _bounds(metadata: list[Any]) -> dict[str, Any] | None:
    """The field's numeric bounds as msgspec ``Meta`` arguments; None for another kind."""
    meta: dict[str, Any] = {}
    for item in metadata:
        name = type(item).__name__.lower()
        if name not in _BOUNDS:
            return None
        meta[name] = getattr(item, name)
    return meta


def _plain_type(annotation: Any) -> Any:
    """The msgspec type of a non-optional field's annotation; None if it has none here."""
    if annotation is AwareDatetime:
        return Annotated[datetime, msgspec.Meta(tz=True)]
    if annotation in _SCALARS:
        return annotation
    if get_origin(annotation) is Literal:
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum):  # read by value
        return annotation
    args = get_args(annotation)
    if get_origin(annotation) is list and len(args) == 1 and args[0] in _SCALARS:
        return annotation
    if get_origin(annotation) is dict and len(args) == 2 and all(a in _SCALARS for a in args):
        return annotation
    return None


def _field_type(annotation: Any, metadata: list[Any]) -> Any:
    """The msgspec type of a field (its bounds on the value, optional or not), or None."""
    meta = _bounds(metadata)
    if meta is None:
        return None
    optional = isinstance(annotation, types.UnionType) and type(None) in get_args(annotation)
    if optional:
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            return None
        annotation = inner[0]
    plain = _plain_type(annotation)
    if plain is None:
        return None
    if meta:
        if annotation not in (int, float):
            return None
        plain = Annotated[plain, msgspec.Meta(**meta)]
    return plain | None if optional else plain


def struct_for(model: type[BaseModel]) -> type[msgspec.Struct] | None:
    """A msgspec struct mirroring ``model``'s fields and carrying its own methods and
    properties (its ``record_id`` and what that reads); None when a field cannot be
    mirrored."""
    fields: list[tuple[Any, ...]] = []
    for name, info in model.model_fields.items():
        typ = _field_type(info.annotation, info.metadata)
        if typ is None or info.alias not in (None, name):
            return None
        if info.default_factory is not None:
            if info.default_factory_takes_validated_data:
                return None
            factory = cast(Callable[[], Any], info.default_factory)
            fields.append((name, typ, msgspec.field(default_factory=factory)))
        elif info.default is PydanticUndefined:
            fields.append((name, typ))
        else:
            fields.append((name, typ, info.default))
    # the record's own methods (below ``DerivedRecord``, whose ``to_json`` reads a model)
    mro = model.__mro__
    own = mro[:mro.index(DerivedRecord)] if DerivedRecord in mro else (model,)
    methods = {name: value for klass in reversed(own) for name, value in vars(klass).items()
               if isinstance(value, types.FunctionType | staticmethod | property)
               and not name.startswith("_")}
    return msgspec.defstruct(f"Fast{model.__name__}", fields, kw_only=True,
                             forbid_unknown_fields=True, namespace=methods)


#: derived record class → a decoder of its struct (None: the class has none)
_DECODERS: dict[type[BaseModel], msgspec.json.Decoder[Any] | None] = {}


def decoder_for(model: type[BaseModel]) -> msgspec.json.Decoder[Any] | None:
    """The JSON decoder of ``model``'s struct (made once), or None if it has none."""
    if model not in _DECODERS:
        struct = struct_for(model)
        _DECODERS[model] = None if struct is None else msgspec.json.Decoder(struct)
    return _DECODERS[model]


def decode_record(model: type[BaseModel], raw: bytes) -> Any | None:
    """A derived record of ``model`` as its struct; None: read it with the model."""
    decoder = _DECODERS.get(model) or decoder_for(model)
    if decoder is None or raw.find(b"\\") >= 0 or _LONG_FRACTION.search(raw) is not None:
        return None
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
