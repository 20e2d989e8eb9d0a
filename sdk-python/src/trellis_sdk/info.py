""":class:`PluginInfo`: what a plugin reconciles, emits and reads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KindRef:
    """A kind of object: ``apps/v1`` + ``Deployment``."""

    api_version: str
    kind: str


@dataclass
class PluginInfo:
    """What a plugin is, built fluently::

        PluginInfo("website", "samples.trellis.dev/v1alpha1", "Website") \\
            .child("apps/v1", "Deployment").child("v1", "Service")
    """

    name: str
    api_version: str
    kind: str
    version: str = "0.1.0"
    children: list[KindRef] = field(default_factory=list)
    related_kinds: list[KindRef] = field(default_factory=list)
    finalizer: bool = False
    validate: bool = False
    default: bool = False
    default_related_kinds: list[KindRef] = field(default_factory=list)

    @property
    def parent(self) -> KindRef:
        """The kind the plugin reconciles."""
        return KindRef(self.api_version, self.kind)

    def with_version(self, version: str) -> "PluginInfo":
        """Sets the plugin's own version (semver)."""
        self.version = version
        return self

    def child(self, api_version: str, kind: str) -> "PluginInfo":
        """Allows children of this kind."""
        self.children.append(KindRef(api_version, kind))
        return self

    def related(self, api_version: str, kind: str) -> "PluginInfo":
        """Reads objects of this kind (handed to every reconcile)."""
        self.related_kinds.append(KindRef(api_version, kind))
        return self

    def with_finalizer(self) -> "PluginInfo":
        """Asks for a finalizer: reconcile is called with ``finalizing`` set
        once the parent is being deleted, until it answers ``finalized``."""
        self.finalizer = True
        return self

    def validating(self) -> "PluginInfo":
        """Has the host call :meth:`Reconciler.validate` before a parent is stored."""
        self.validate = True
        return self

    def defaulting(self) -> "PluginInfo":
        """Has the host call :meth:`Reconciler.default` before a parent is stored."""
        self.default = True
        return self

    def defaulting_related(self, api_version: str, kind: str) -> "PluginInfo":
        """Has the host call :meth:`Reconciler.default_related` on new objects
        of this related kind (added to the related kinds if missing)."""
        kind_ref = KindRef(api_version, kind)
        if kind_ref not in self.related_kinds:
            self.related_kinds.append(kind_ref)
        self.default_related_kinds.append(kind_ref)
        return self
