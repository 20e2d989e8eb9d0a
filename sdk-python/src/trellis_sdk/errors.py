"""The errors a reconcile may raise; the host maps each to its WIT ``error``
case (``invalid-spec``, ``transient``, ``fatal``)."""

from __future__ import annotations


class PluginError(Exception):
    """Base of the errors the host understands."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidSpec(PluginError):
    """The parent's spec is wrong; the host does not retry until it changes."""


class Transient(PluginError):
    """A temporary failure; the host retries with backoff."""


class Fatal(PluginError):
    """The plugin cannot work; the host retries with its longest backoff."""
