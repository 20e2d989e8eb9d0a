""":class:`RelatedSelector`: which related objects one parent needs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RelatedSelector:
    """Objects of one related kind, narrowed by labels and a scope.

    The scope is the parent's namespace unless one of :meth:`in_namespace`,
    :meth:`in_namespaces_labelled` or :meth:`named` says otherwise.
    """

    api_version: str
    kind: str
    labels: dict | None = None
    namespace: str | None = None
    namespace_selector: dict | None = None
    names: list[str] | None = field(default=None)

    def matching(self, selector: dict) -> "RelatedSelector":
        """Only objects whose labels match this label selector
        (``matchLabels``, ``matchExpressions``)."""
        self.labels = selector
        return self

    def in_namespace(self, namespace: str) -> "RelatedSelector":
        """Objects of another namespace (cluster-wide registrations only)."""
        self.namespace = namespace
        return self

    def in_namespaces_labelled(self, selector: dict) -> "RelatedSelector":
        """Objects of every namespace whose labels match ``selector``."""
        self.namespace_selector = selector
        return self

    def named(self, *names: str) -> "RelatedSelector":
        """Only the objects of these names in the parent's namespace."""
        self.names = list(names)
        return self
