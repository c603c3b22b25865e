"""Reading one attribute of an NGSI-LD entity in any of its forms.

Normalized (``{"type": "Property", "value": …, "unitCode": …}``), concise (the same without
``"type"``), keyValues (the plain value), multi-attribute (a list of instances told apart by
``datasetId``: the default instance, the one without a ``datasetId``, is read, else the
first), and values wrapped as ``{"@type": …, "@value": …}``.
"""

from __future__ import annotations

from typing import Any

from cityops.ingest.exceptions import MappingError

NGSI_TYPES = ("Property", "GeoProperty", "Relationship", "LanguageProperty")


def _is_attr(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    if "type" in raw:
        return raw["type"] in NGSI_TYPES
    # the concise representation (NGSI-LD 1.6) leaves "type" out of attributes
    return "value" in raw or "object" in raw


def _is_relationship(raw: dict[str, Any]) -> bool:
    return raw.get("type") == "Relationship" or ("type" not in raw and "object" in raw)


def instance(entity: dict[str, Any], name: str) -> Any:
    """The attribute ``name`` (one instance of a multi-attribute), or None when absent."""
    raw = entity.get(name)
    if isinstance(raw, list) and raw and all(_is_attr(r) for r in raw):
        default = [r for r in raw if "datasetId" not in r]
        return default[0] if default else raw[0]
    return raw


def value(entity: dict[str, Any], name: str) -> Any:
    """The plain value of attribute ``name`` (a Relationship's object), or None."""
    raw = instance(entity, name)
    if _is_attr(raw):
        raw = raw.get("object") if _is_relationship(raw) else raw.get("value")
    if isinstance(raw, dict) and "@value" in raw:
        raw = raw["@value"]
    return raw


def meta(entity: dict[str, Any], name: str, key: str) -> Any:
    """A sub-attribute (``unitCode``, ``observedAt``…) of attribute ``name``, or None."""
    raw = instance(entity, name)
    return raw.get(key) if _is_attr(raw) else None


def number(entity: dict[str, Any], name: str, shown: str | None = None) -> float | None:
    """A numeric attribute, or None when absent; any other JSON type is refused."""
    v = value(entity, name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise MappingError("wrong_type", f"{shown or name} must be a number, got "
                           f"{type(v).__name__}", shown or name)
    return float(v)


def text(entity: dict[str, Any], name: str) -> str | None:
    """A string attribute (the first of a list of strings), or None."""
    v = value(entity, name)
    if isinstance(v, list):
        v = v[0] if v else None
    return v if isinstance(v, str) and v else None


def unit(entity: dict[str, Any], name: str, default: str) -> str:
    """The ``unitCode`` of attribute ``name`` (upper-cased), or the model's default unit."""
    code = meta(entity, name, "unitCode")
    if code is None:
        return default
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)  # "61" sent as the JSON number 61
    if not isinstance(code, str) or not code.strip():
        raise MappingError("unknown_unit", f"{name}: unitCode {code!r} is not a code", name)
    return code.strip().upper()
