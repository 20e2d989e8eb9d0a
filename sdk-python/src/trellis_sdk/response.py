""":class:`Response`: the desired children, status, conditions and events of
one reconcile, built fluently."""

from __future__ import annotations

from dataclasses import dataclass, field

from .schema import dump

CREATE_ONLY = "trellis.dev/create-only"
"""Annotation the host reads on a desired child: create it if missing, never
update it (see :meth:`Response.child_once`)."""


@dataclass
class Condition:
    """A status condition. The host adds ``lastTransitionTime`` and
    ``observedGeneration``."""

    type: str
    status: str
    reason: str
    message: str

    @staticmethod
    def of(type_: str, is_true: bool, reason: str, message: str) -> "Condition":
        """A condition of ``type_`` that is ``True`` when ``is_true``."""
        return Condition(type_, "True" if is_true else "False", reason, message)

    @staticmethod
    def ready(is_ready: bool, reason: str, message: str) -> "Condition":
        """The ``Ready`` condition."""
        return Condition.of("Ready", is_ready, reason, message)


@dataclass
class Event:
    """An event recorded on the parent; ``warning`` for a Warning."""

    reason: str
    message: str
    warning: bool = False


@dataclass
class Decoration:
    """Labels and annotations for the host to keep on an object the plugin
    does not own, of one of its related kinds. A value of ``None`` removes
    the key."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    labels: dict[str, str | None] = field(default_factory=dict)
    annotations: dict[str, str | None] = field(default_factory=dict)

    def label(self, key: str, value: str | None) -> "Decoration":
        self.labels[key] = value
        return self

    def annotation(self, key: str, value: str | None) -> "Decoration":
        self.annotations[key] = value
        return self


@dataclass
class Response:
    """What one reconcile wants: build it with the methods, each returning
    the response."""

    children: list[dict] = field(default_factory=list)
    status_value: dict | None = None
    conditions: list[Condition] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after_seconds: int | None = None
    is_finalized: bool = False
    decorations: list[Decoration] = field(default_factory=list)

    def child(self, obj: dict) -> "Response":
        """Adds a desired child (a dict with apiVersion, kind and metadata)."""
        self.children.append(obj)
        return self

    def child_once(self, obj: dict) -> "Response":
        """Adds a child the host creates if missing and never updates."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("annotations", {})[CREATE_ONLY] = "true"
        return self.child(obj)

    def status(self, status) -> "Response":
        """Sets the parent's status (without ``conditions``): a dict, or a
        dataclass instance (written with camelCase keys)."""
        self.status_value = dump(status)
        return self

    def condition(self, condition: Condition) -> "Response":
        """Sets a condition on the parent's status."""
        self.conditions.append(condition)
        return self

    def event(self, reason: str, message: str) -> "Response":
        """Records a Normal event on the parent."""
        self.events.append(Event(reason, message))
        return self

    def warning(self, reason: str, message: str) -> "Response":
        """Records a Warning event on the parent."""
        self.events.append(Event(reason, message, warning=True))
        return self

    def requeue_after(self, seconds: int) -> "Response":
        """Reconciles the parent again after ``seconds`` even if nothing changes."""
        self.requeue_after_seconds = int(seconds)
        return self

    def finalized(self) -> "Response":
        """While finalizing: cleanup is done, the finalizer may come off."""
        self.is_finalized = True
        return self

    def decorate(self, decoration: Decoration) -> "Response":
        """Keeps labels and annotations set on an object the plugin does not own."""
        self.decorations.append(decoration)
        return self
