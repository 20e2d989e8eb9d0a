"""Write a Trellis reconciler plugin in Python.

A plugin is one class deriving from :class:`Reconciler`::

    from trellis_sdk import Reconciler, PluginInfo, Response, Condition, InvalidSpec

    class Hello(Reconciler):
        def info(self):
            return PluginInfo("hello", "example.com/v1", "Hello").child("v1", "ConfigMap")

        def reconcile(self, req):
            if "greeting" not in req.spec:
                raise InvalidSpec("spec.greeting is required")
            cm = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": req.child_meta(req.name),
                  "data": {"greeting": req.spec["greeting"]}}
            return Response().child(cm).condition(Condition.ready(True, "Configured", "done"))

Build it into a component with ``trellis-py build hello:Hello -o hello.wasm``
(see :mod:`trellis_sdk.build`). Everything here is plain Python: objects
are dicts, as the Kubernetes API serialises them, so a plugin can be unit
tested with pytest without building it. The contract behind this package is
the WIT package ``trellis:reconciler@0.2.0``, shipped inside it
(``trellis_sdk/wit``).
"""

from __future__ import annotations

from .admission import AdmissionRequest
from .errors import Fatal, InvalidSpec, PluginError, Transient
from .info import KindRef, PluginInfo
from .related import RelatedSelector
from .request import Request, app_labels, child_meta
from .response import CREATE_ONLY, Condition, Decoration, Event, Response

__all__ = [
    "AdmissionRequest",
    "CREATE_ONLY",
    "Condition",
    "Decoration",
    "Event",
    "Fatal",
    "InvalidSpec",
    "KindRef",
    "PluginError",
    "PluginInfo",
    "Reconciler",
    "RelatedSelector",
    "Request",
    "Response",
    "Transient",
    "app_labels",
    "child_meta",
]


class Reconciler:
    """A reconciler plugin: override :meth:`info` and :meth:`reconcile`.

    The host creates a fresh instance of the plugin for every call, so the
    class must not rely on state kept between calls.
    """

    def info(self) -> PluginInfo:
        """What the plugin reconciles and which kinds it may emit or read."""
        raise NotImplementedError("a Reconciler must override info()")

    def reconcile(self, req: Request) -> Response:
        """The desired children and status of one parent.

        Raise :class:`InvalidSpec`, :class:`Transient` or :class:`Fatal` to
        fail; any other exception is reported as :class:`Fatal`.
        """
        raise NotImplementedError("a Reconciler must override reconcile()")

    def related(self, parent: dict) -> list[RelatedSelector] | None:
        """Which related objects ``parent`` needs; ``None`` (the default)
        hands every object of the related kinds in its namespace."""
        return None

    def validate(self, req: AdmissionRequest) -> list[str]:
        """Problems with a parent about to be stored, one sentence each (an
        empty list admits it). Called only with :meth:`PluginInfo.validating`."""
        return []

    def default(self, obj: dict) -> dict:
        """The parent with its defaults filled in (only ``metadata.labels``,
        ``metadata.annotations`` and ``spec`` may change). Called only with
        :meth:`PluginInfo.defaulting`. Raise :class:`InvalidSpec` to refuse."""
        return obj

    def default_related(self, obj: dict, parents: list[dict]) -> dict:
        """A new object of one of the ``default_related`` kinds, filled in
        given the plugin's parents of its namespace."""
        return obj
