"""A CustomResourceDefinition from the plugin's own types.

The spec and status of a kind are dataclasses; :func:`openapi_schema`
turns one into the OpenAPI v3 schema Kubernetes validates with, and
:func:`crd` wraps the spec's and status's schemas into a CRD for the kind a
:class:`~trellis_sdk.info.PluginInfo` reconciles::

    @dataclass
    class WebsiteSpec:
        image: str
        host: str
        replicas: int = field(default=1, metadata={"minimum": 0, "maximum": 20})

    crd(info, WebsiteSpec, WebsiteStatus)

``str``, ``int``, ``float``, ``bool``, ``list[T]``, ``dict[str, T]``,
``Optional[T]`` (``T | None``) and nested dataclasses are understood. A
field without a default is required. A field's ``metadata`` is merged into
its schema (``description``, ``minimum``, ``pattern``, ``enum``, ...); a
class's docstring becomes its description. ``trellis-py crd MODULE:CLASS``
prints the CRD of a plugin whose class names ``spec_type`` (and
``status_type``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from .errors import InvalidSpec
from .info import PluginInfo

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


class SchemaError(TypeError):
    """A type that has no OpenAPI schema here."""


def openapi_schema(tp: Any, defaults: bool = True) -> dict:
    """The OpenAPI v3 schema of a type (a dataclass for an object); with
    ``defaults``, a field's default is the schema's (the API server fills
    it in), which only a spec wants."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) != 1:
            raise SchemaError(f"{tp}: only Optional[T] unions have a schema")
        return openapi_schema(present[0], defaults)
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if origin is list:
        return {"type": "array", "items": openapi_schema(args[0], defaults)}
    if origin is dict:
        if args and args[0] is not str:
            raise SchemaError(f"{tp}: object keys are strings")
        values = openapi_schema(args[1], defaults) if args else {"x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": values}
    if tp is Any:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if tp is dict:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if tp is list:
        return {"type": "array", "items": {"x-kubernetes-preserve-unknown-fields": True}}
    if dataclasses.is_dataclass(tp):
        return _object_schema(tp, defaults)
    raise SchemaError(f"{tp!r} has no OpenAPI schema (use str, int, float, bool, list, dict, Optional or a dataclass)")


def _object_schema(cls: type, defaults: bool) -> dict:
    hints = typing.get_type_hints(cls)
    properties: dict[str, dict] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        schema = {**openapi_schema(tp, defaults), **dict(f.metadata)}
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if defaults and f.default is not dataclasses.MISSING and f.default is not None and "default" not in schema:
            schema["default"] = f.default
        optional = typing.get_origin(tp) in (typing.Union, types.UnionType)
        if not has_default and not optional:
            required.append(f.name)
        properties[_camel(f.name)] = schema
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = [_camel(r) for r in required]
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(f"{cls.__name__}("):
        schema["description"] = " ".join(doc.split())
    return schema


def _camel(name: str) -> str:
    """``node_port`` as the API spells it, ``nodePort``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_CONDITIONS = {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


def crd(info: PluginInfo, spec_type: type, status_type: type | None = None, plural: str | None = None,
        scope: str = "Namespaced") -> dict:
    """The CRD of the kind ``info`` reconciles, serving one version."""
    group, _, version = info.api_version.rpartition("/")
    if not group:
        raise SchemaError(f"{info.api_version}: a custom resource needs a group (group/version)")
    plural = plural or info.kind.lower() + "s"
    properties = {"spec": openapi_schema(spec_type)}
    if status_type is not None:
        status = openapi_schema(status_type, defaults=False)
        # The fields the host writes beside the plugin's: kept by the API
        # server only if the schema names them.
        status.setdefault("properties", {}).setdefault("conditions", _CONDITIONS)
        status["properties"].setdefault("observedGeneration", {"type": "integer", "format": "int64"})
        properties["status"] = status
    else:
        properties["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": plural,
                "singular": info.kind.lower(),
            },
            "scope": scope,
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": properties, "required": ["spec"]}},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for what :func:`crd` returns (strings are
    written JSON-quoted, which YAML reads as they are)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}\n"
        out = ""
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out += f"{pad}{key}:\n{to_yaml(item, indent + 1)}"
            else:
                out += f"{pad}{key}: {to_yaml(item, 0)}"
        return out
    if isinstance(value, list):
        if not value:
            return "[]\n"
        out = ""
        for item in value:
            text = to_yaml(item, indent + 1)
            out += f"{pad}- {text.lstrip()}" if isinstance(item, dict) and item else f"{pad}- {text.lstrip()}"
        return out
    return json.dumps(value) + "\n"


def load(tp: Any, value: Any, path: str = "spec") -> Any:
    """``value`` (parsed JSON) as an instance of ``tp``, the same types
    :func:`openapi_schema` understands; camelCase keys fill snake_case
    fields, missing fields take their defaults. A value of the wrong type
    or a missing required field raises :class:`~trellis_sdk.errors.InvalidSpec`
    naming the field (``spec.replicas must be an integer``)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return load(next(a for a in args if a is not type(None)), value, path)
    if tp is Any:
        return value
    if tp in _SCALARS:
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise InvalidSpec(f"{path} must be {_ARTICLE[tp]}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise InvalidSpec(f"{path} must be a list")
        item = args[0] if args else Any
        return [load(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise InvalidSpec(f"{path} must be an object")
        item = args[1] if len(args) == 2 else Any
        return {k: load(item, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InvalidSpec(f"{path} must be an object")
        hints = typing.get_type_hints(tp)
        given = {}
        for f in dataclasses.fields(tp):
            key = _camel(f.name)
            if key in value:
                given[f.name] = load(hints[f.name], value[key], f"{path}.{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if typing.get_origin(hints[f.name]) in (typing.Union, types.UnionType):
                    given[f.name] = None
                else:
                    raise InvalidSpec(f"{path}.{key} is required")
        return tp(**given)
    raise SchemaError(f"{tp!r} cannot be loaded")


_ARTICLE = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def dump(value: Any) -> Any:
    """A dataclass instance (or a value holding some) as JSON-ready data
    with camelCase keys, leaving out fields that are ``None``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _camel(f.name): dump(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value
