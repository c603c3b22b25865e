"""JSON-LD ``@context`` handling: attribute names brought back to the terms cityops reads.

An NGSI-LD entity may name its attributes by short terms under a ``@context`` (inline, or in
the HTTP ``Link`` header), or by full IRIs. Both are resolved here against
``context.jsonld`` beside this module: cityops' own offline list of the terms it reads and
their IRIs, which also says which well-known remote contexts (the NGSI-LD core context and the
Smart Data Models contexts) it stands in for. Nothing is fetched over the network: a context
URL not in that list is refused (``unknown_context``) rather than guessed, since its terms
could mean anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

from cityops.ingest.exceptions import MappingError

LINK_REL = "http://www.w3.org/ns/json-ld#context"
_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')


@dataclass(frozen=True)
class BundledContext:
    """Terms → IRIs, IRIs → our terms, and the remote context URLs this copy stands in for."""

    terms: dict[str, str]
    canonical: dict[str, str]
    serves: frozenset[str]


def _expand_curie(value: str, prefixes: dict[str, str]) -> str:
    prefix, sep, rest = value.partition(":")
    if sep and prefix in prefixes and not rest.startswith("//"):
        return prefixes[prefix] + rest
    return value


@cache
def bundled() -> BundledContext:
    """The packaged context file, parsed once."""
    text = resources.files(__package__).joinpath("context.jsonld").read_bytes()
    doc = orjson.loads(text)
    raw: dict[str, str] = doc["@context"]
    prefixes = {k: v for k, v in raw.items() if v.endswith("/") and ":" in v}
    terms = {k: _expand_curie(v, prefixes) for k, v in raw.items() if k not in prefixes}
    canonical: dict[str, str] = {}
    for term, iri in terms.items():
        canonical.setdefault(iri, term)  # the first term listed for an IRI is ours
    for iri, term in doc["x-cityops"]["aliases"].items():
        canonical.setdefault(iri, term)
    return BundledContext(terms=terms, canonical=canonical,
                          serves=frozenset(doc["x-cityops"]["serves"]))


def link_context(header: str | None) -> str | None:
    """The context URL of an HTTP ``Link`` header (``rel`` = the JSON-LD context), if any."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        params = match.group(2).replace(" ", "")
        if f'rel="{LINK_REL}"' in params or f"rel={LINK_REL}" in params:
            return match.group(1).strip()
    return None


def active_terms(context: Any) -> dict[str, str]:
    """Term → IRI for an entity's ``@context`` value (URL, inline object, or a list of them)."""
    if context is None:
        return {}
    items = context if isinstance(context, list) else [context]
    out: dict[str, str] = {}
    known = bundled()
    for item in items:
        if isinstance(item, str):
            if item not in known.serves:
                raise MappingError("unknown_context", f"@context {item!r} is not one cityops "
                                   "resolves offline; send the terms inline or use a Smart "
                                   "Data Models / NGSI-LD core context", "@context")
            out.update(known.terms)
        elif isinstance(item, dict):
            prefixes = {k: v for k, v in item.items()
                        if isinstance(v, str) and v.endswith(("/", "#"))}
            for term, iri in item.items():
                if isinstance(iri, dict):
                    iri = iri.get("@id")
                if isinstance(iri, str) and term not in prefixes:
                    out[term] = _expand_curie(iri, {**prefixes, "ngsi-ld":
                                                    "https://uri.etsi.org/ngsi-ld/"})
        else:
            raise MappingError("bad_context", f"@context entry is a JSON "
                               f"{type(item).__name__}", "@context")
    return out


def term(name: str, active: dict[str, str]) -> str:
    """Our term for an attribute name: via the active context, or the name as an IRI."""
    if name in ("@id", "@type", "@value"):
        return {"@id": "id", "@type": "type", "@value": "@value"}[name]
    canonical = bundled().canonical
    iri = active.get(name, name)
    if iri in canonical:
        return canonical[iri]
    # a term the context sends elsewhere keeps that IRI, so it is never read as ours
    return iri


def compact(entity: dict[str, Any], context: Any = None
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """``entity`` with every attribute name (and the type) in our terms, and our term →
    the name the sender used (so reasons name the attribute as it was sent).

    ``context`` is the request's context (Link header) when the entity carries none. With no
    context at all, short names are read as the Smart Data Models' own (the NGSI-LD default
    for keyValues clients that post plain JSON); full IRIs are always resolved.
    """
    ctx = entity.get("@context", context)
    active = active_terms(ctx) if ctx is not None else bundled().terms
    out: dict[str, Any] = {}
    sent: dict[str, str] = {}
    for key, value in entity.items():
        if key == "@context":
            continue
        name = term(key, active)
        if name == "type" and isinstance(value, str):
            value = term(value, active)
        elif name == "type" and isinstance(value, list):
            value = [term(v, active) if isinstance(v, str) else v for v in value]
        elif isinstance(value, dict):
            value = _compact_attribute(value, active)
        elif isinstance(value, list):
            value = [_compact_attribute(v, active) if isinstance(v, dict) else v for v in value]
        if name in out:
            raise MappingError("duplicate_attribute", f"{key!r} and another attribute both "
                               f"mean {name!r}", key)
        out[name] = value
        sent[name] = key
    return out, sent


_META = frozenset({"type", "value", "object", "observedAt", "unitCode", "datasetId",
                   "modifiedAt", "createdAt"})
_TYPE_IRIS = frozenset(f"https://uri.etsi.org/ngsi-ld/{t}"
                       for t in ("Property", "GeoProperty", "Relationship"))


def _compact_attribute(attr: dict[str, Any], active: dict[str, str]) -> dict[str, Any]:
    """An attribute's own keys (``value``, ``unitCode``, ``observedAt``…) and its NGSI-LD type
    in our terms; a plain JSON object value (an address, a GeoJSON geometry) is left alone."""
    t = attr.get("type")
    iri_typed = isinstance(t, str) and t in _TYPE_IRIS
    if _META.issuperset(attr) and not iri_typed:
        return attr  # already in core terms, which a context may not redefine (the usual case)
    names = {k: term(k, active) for k in attr}
    if not any(n in _META and n != k for k, n in names.items()) and not iri_typed:
        return attr
    out = {names[k]: v for k, v in attr.items()}
    if isinstance(out.get("type"), str):
        out["type"] = term(out["type"], active)
    return out
