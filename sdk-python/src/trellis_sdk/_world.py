"""The bridge between a :class:`~trellis_sdk.Reconciler` and the bindings
componentize-py generates for ``trellis:reconciler@0.2.0`` (``wit_world``).

Only a component imports this module: ``wit_world`` exists only while
componentize-py builds one. :func:`world_of` turns a Reconciler class into
the ``WitWorld`` class the component exports; it parses the JSON text that
crosses the boundary into dicts, and turns responses and raised errors
back into WIT values.
"""

from __future__ import annotations

import json
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import host as wit_host
from wit_world.imports import types as wit

from . import log as _log
from .admission import AdmissionRequest
from .errors import Fatal, InvalidSpec, PluginError, Transient
from .info import KindRef, PluginInfo
from .related import RelatedSelector
from .request import Request
from .response import Response


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _kind(k: KindRef) -> wit.KindRef:
    return wit.KindRef(api_version=k.api_version, kind=k.kind)


def _info(info: PluginInfo) -> wit.PluginInfo:
    hooks = wit.AdmissionHooks(0)
    if info.validate:
        hooks |= wit.AdmissionHooks.VALIDATE
    if info.default:
        hooks |= wit.AdmissionHooks.DEFAULT
    return wit.PluginInfo(
        name=info.name,
        version=info.version,
        parent=_kind(info.parent),
        children=[_kind(k) for k in info.children],
        related=[_kind(k) for k in info.related_kinds],
        finalizer=info.finalizer,
        admission=hooks,
        default_related=[_kind(k) for k in info.default_related_kinds],
    )


def _selector(s: RelatedSelector) -> wit.RelatedSelector:
    if s.names is not None:
        scope: wit.RelatedScope = wit.RelatedScope_Names(list(s.names))
    elif s.namespace_selector is not None:
        scope = wit.RelatedScope_NamespaceSelector(_dumps(s.namespace_selector))
    elif s.namespace is not None:
        scope = wit.RelatedScope_Namespace(s.namespace)
    else:
        scope = wit.RelatedScope_ParentNamespace()
    return wit.RelatedSelector(
        kind=wit.KindRef(api_version=s.api_version, kind=s.kind),
        labels=None if s.labels is None else _dumps(s.labels),
        scope=scope,
    )


def _response(r: Response) -> wit.Response:
    if not isinstance(r, Response):
        raise Fatal(f"reconcile returned {type(r).__name__}, not a trellis_sdk.Response")
    return wit.Response(
        children=[_dumps(c) for c in r.children],
        status=None if r.status_value is None else _dumps(r.status_value),
        conditions=[
            wit.Condition(type=c.type, status=c.status, reason=c.reason, message=c.message) for c in r.conditions
        ],
        events=[
            wit.Event(
                severity=wit.Severity.WARNING if e.warning else wit.Severity.NORMAL,
                reason=e.reason,
                message=e.message,
            )
            for e in r.events
        ],
        requeue_after_seconds=r.requeue_after_seconds,
        finalized=r.is_finalized,
        decorations=[
            wit.Decoration(
                target=wit.ObjectRef(
                    kind=wit.KindRef(api_version=d.api_version, kind=d.kind), namespace=d.namespace, name=d.name
                ),
                labels=list(d.labels.items()),
                annotations=list(d.annotations.items()),
            )
            for d in r.decorations
        ],
    )


def _error(e: BaseException) -> Err:
    if isinstance(e, InvalidSpec):
        return Err(wit.Error_InvalidSpec(e.message))
    if isinstance(e, Transient):
        return Err(wit.Error_Transient(e.message))
    if isinstance(e, PluginError):
        return Err(wit.Error_Fatal(e.message))
    # A bug in the plugin: its last frame says where.
    where = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
    return Err(wit.Error_Fatal(f"{type(e).__name__}: {e}{at}"))


def _messages(e: BaseException) -> Err:
    return Err([e.message if isinstance(e, PluginError) else f"{type(e).__name__}: {e}"])


_OPERATIONS = {wit.Operation.CREATE: "create", wit.Operation.UPDATE: "update", wit.Operation.DELETE: "delete"}


def world_of(reconciler_class: type) -> type:
    """The ``WitWorld`` class exporting ``reconciler_class``."""
    plugin = reconciler_class()

    def _log_line(level: str, message: str) -> None:
        wit_host.log(getattr(wit_host.Level, level), message)

    _log.set_sink(_log_line)

    class WitWorld(wit_world.WitWorld):
        def info(self) -> wit.PluginInfo:
            return _info(plugin.info())

        def related(self, parent: str):
            answer = plugin.related(json.loads(parent))
            return None if answer is None else [_selector(s) for s in answer]

        def reconcile(self, req: wit.Request) -> wit.Response:
            try:
                request = Request(
                    parent=json.loads(req.parent),
                    children=[json.loads(c) for c in req.children],
                    related=[json.loads(r) for r in req.related],
                    config=None if req.config is None else json.loads(req.config),
                    finalizing=req.finalizing,
                )
                return _response(plugin.reconcile(request))
            except Exception as e:  # every failure becomes a WIT error
                raise _error(e) from None

        def validate(self, req: wit.AdmissionRequest) -> None:
            try:
                problems = plugin.validate(
                    AdmissionRequest(
                        operation=_OPERATIONS[req.operation],
                        object=None if req.object is None else json.loads(req.object),
                        old_object=None if req.old_object is None else json.loads(req.old_object),
                        username=req.user.username,
                        groups=list(req.user.groups),
                        related=[json.loads(r) for r in req.related],
                        config=None if req.config is None else json.loads(req.config),
                    )
                )
            except Exception as e:
                raise _messages(e) from None
            if problems:
                raise Err([str(p) for p in problems])

        def default(self, obj: str) -> str:
            try:
                return _dumps(plugin.default(json.loads(obj)))
            except Exception as e:
                raise _messages(e) from None

        def default_related(self, obj: str, parents: list[str]) -> str:
            try:
                return _dumps(plugin.default_related(json.loads(obj), [json.loads(p) for p in parents]))
            except Exception as e:
                raise _messages(e) from None

    return WitWorld
