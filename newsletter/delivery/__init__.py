"""Delivery backends, chosen by name: built-ins plus plugins from the `newsletter.backends` entry point group.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."newsletter.backends"]
    postmark = "newsletter_postmark:PostmarkBackend"

and the class subclasses `Backend`. Then `[delivery] backend = "postmark"` and
its options under `[delivery.postmark]` work like a built-in.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

from newsletter.delivery.base import (
    Backend,
    BackendSettings,
    DeliveryError,
    DeliveryStopped,
    OutgoingMessage,
    ResultCallback,
    SendResult,
)
from newsletter.delivery.console import ConsoleBackend
from newsletter.delivery.file import FileBackend
from newsletter.delivery.mbox import MboxBackend
from newsletter.delivery.memory import MemoryBackend
from newsletter.delivery.smtp import SMTPBackend

__all__ = [
    "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendSettings",
    "DeliveryError",
    "DeliveryStopped",
    "OutgoingMessage",
    "ResultCallback",
    "SendResult",
    "UnknownBackend",
    "available_backends",
    "create_backend",
    "get_backend_class",
]

log = logging.getLogger(__name__)

BUILTIN_BACKENDS: dict[str, type[Backend]] = {
    "smtp": SMTPBackend,
    "file": FileBackend,
    "mbox": MboxBackend,
    "console": ConsoleBackend,
    "memory": MemoryBackend,
}
ENTRY_POINT_GROUP = "newsletter.backends"


class UnknownBackend(ValueError):
    """No built-in or installed backend has this name."""


def available_backends() -> dict[str, type[Backend]]:
    """Built-in backends plus installed plugins; a plugin that fails to load is logged and skipped."""
    backends = dict(BUILTIN_BACKENDS)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN_BACKENDS:
            log.warning("backend plugin %r (%s) ignored: the name is taken by a built-in", entry.name, entry.value)
            continue
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not break the others
            log.warning(
                "backend plugin %r (%s) failed to load: %s: %s", entry.name, entry.value, type(exc).__name__, exc
            )
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Backend)):
            log.warning("backend plugin %r (%s) ignored: not a Backend subclass", entry.name, entry.value)
            continue
        backends[entry.name] = loaded
    return backends


def get_backend_class(name: str) -> type[Backend]:
    """The backend class called `name`; raises `UnknownBackend` listing the choices."""
    if name in BUILTIN_BACKENDS:
        return BUILTIN_BACKENDS[name]
    backends = available_backends()
    if name not in backends:
        raise UnknownBackend(f"unknown backend {name!r} (choose one of: {', '.join(sorted(backends))})")
    return backends[name]


def create_backend(name: str, options: dict, *, base_dir: Path) -> Backend:
    """Validate `options` with the backend's Settings (pydantic ValidationError propagates) and build it."""
    cls = get_backend_class(name)
    return cls(cls.Settings.model_validate(options), base_dir=base_dir)
