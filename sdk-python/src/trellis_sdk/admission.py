""":class:`AdmissionRequest`: the input of :meth:`Reconciler.validate`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AdmissionRequest:
    """A parent about to be stored.

    ``operation`` is ``"create"``, ``"update"`` or ``"delete"``; ``object``
    and ``old_object`` are dicts (``None`` where the operation has none).
    """

    operation: str
    object: dict | None
    old_object: dict | None
    username: str = ""
    groups: list[str] = field(default_factory=list)
    related: list[dict] = field(default_factory=list)
    config: object | None = None
