"""The __KIND__ plugin (__GROUP__/__VERSION__), in Python.

Each __KIND__ gets a ConfigMap holding its message, repeated `replicas`
times; its status says what was written. `make test` runs the scenarios of
tests/ through the built module; `make crd` writes crd.yaml from the
dataclasses below.
"""

from dataclasses import dataclass, field
from typing import Optional

from trellis_sdk import Condition, PluginInfo, Reconciler, Request, Response


@dataclass
class __KIND__Spec:
    """What a __KIND__ asks for."""

    message: str = field(metadata={"description": "The message the ConfigMap holds."})
    replicas: int = field(default=1, metadata={"minimum": 1, "maximum": 10, "description": "How often."})


@dataclass
class __KIND__Status:
    """What the plugin last wrote."""

    message: str = ""
    # Written by the host from the Response's conditions.
    conditions: Optional[list[dict]] = None


class __KIND__(Reconciler):
    spec_type = __KIND__Spec
    status_type = __KIND__Status

    def info(self) -> PluginInfo:
        return PluginInfo("__NAME__", "__GROUP__/__VERSION__", "__KIND__").child("v1", "ConfigMap")

    def reconcile(self, req: Request) -> Response:
        spec = req.spec_as(__KIND__Spec)
        message = " ".join([spec.message] * spec.replicas)
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": req.child_meta(req.name, req.app_labels("__NAME__", "message")),
            "data": {"message": message},
        }
        return (
            Response()
            .child(config_map)
            .status(__KIND__Status(message=message))
            .condition(Condition.ready(True, "Configured", f"ConfigMap {req.name} holds the message"))
        )
