""":class:`Request`: the input of one reconcile, parsed into dicts."""

from __future__ import annotations

from dataclasses import dataclass, field

from .schema import load


def child_meta(name: str, namespace: str = "", labels: dict | None = None) -> dict:
    """Metadata for a child called ``name`` in ``namespace`` (left out when
    empty), carrying ``labels`` if given. The host adds the owner reference
    and its ownership labels itself."""
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def app_labels(app: str, instance: str, component: str) -> dict:
    """The recommended ``app.kubernetes.io/*`` labels of a child: ``app``
    is the application, ``instance`` the parent's name, ``component`` the
    child's role."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    }


def _is(obj: dict, api_version: str, kind: str) -> bool:
    return obj.get("apiVersion") == api_version and obj.get("kind") == kind


@dataclass
class Request:
    """One reconcile's input: the parent, the observed children, the related
    objects and the registration's config, all parsed from JSON."""

    parent: dict
    children: list[dict] = field(default_factory=list)
    related: list[dict] = field(default_factory=list)
    config: object | None = None
    finalizing: bool = False

    @property
    def metadata(self) -> dict:
        """The parent's metadata."""
        return self.parent.get("metadata") or {}

    @property
    def name(self) -> str:
        """The parent's name."""
        return self.metadata.get("name", "")

    @property
    def namespace(self) -> str:
        """The parent's namespace (empty for a cluster-scoped parent)."""
        return self.metadata.get("namespace", "") or ""

    @property
    def spec(self) -> dict:
        """The parent's spec (an empty dict when it has none)."""
        return self.parent.get("spec") or {}

    def spec_as(self, spec_type: type):
        """The parent's spec as an instance of the dataclass ``spec_type``
        (see :func:`trellis_sdk.schema.load`): a field of the wrong type or
        a missing required one raises ``InvalidSpec`` naming it."""
        return load(spec_type, self.spec)

    def child_meta(self, name: str, labels: dict | None = None) -> dict:
        """Metadata for a child called ``name`` in the parent's namespace."""
        return child_meta(name, self.namespace, labels)

    def app_labels(self, app: str, component: str) -> dict:
        """The ``app.kubernetes.io/*`` labels of a child of this parent."""
        return app_labels(app, self.name, component)

    def children_of(self, api_version: str, kind: str) -> list[dict]:
        """The observed children of one kind."""
        return [c for c in self.children if _is(c, api_version, kind)]

    def child(self, api_version: str, kind: str, name: str) -> dict | None:
        """The observed child of this kind and name, if any."""
        for c in self.children_of(api_version, kind):
            if (c.get("metadata") or {}).get("name") == name:
                return c
        return None

    def related_of(self, api_version: str, kind: str) -> list[dict]:
        """The related objects of one kind."""
        return [r for r in self.related if _is(r, api_version, kind)]
