"""Counting, timing and tracing the session store's operations, in one place.

:func:`instrument_operations` wraps the named coroutine methods of the store class once,
when :mod:`fiml.sessions.store` is imported: each call reports its backend, operation,
outcome and duration to the metrics recorder (:func:`fiml.core.metrics.recorder`), and with
tracing on is a span (``fiml.store <operation>``, :mod:`fiml.core.tracing`). Only
the outermost operation of a call counts: ``close_session`` reads the session back with
``get_session``, and that read is part of closing, not a second operation. With metrics
and tracing off the wrapper costs an attribute test and a global one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine, Iterable
from contextvars import ContextVar
from typing import Any, Protocol

from fiml.core import tracing
from fiml.core.metrics import outcome_of, recorder

__all__ = ["instrument_operations"]

_inside: ContextVar[bool] = ContextVar("fiml_store_operation", default=False)


class _Tiers(Protocol):
    @property
    def backend(self) -> Any: ...

    @property
    def archive(self) -> Any: ...


def _deployment(store: _Tiers) -> str:
    """``sqlite``, ``postgresql``, or ``redis+postgresql`` (active tier + archive)."""
    backend, archive = store.backend, store.archive
    return str(archive.name) if backend is archive else f"{backend.name}+{archive.name}"


def _timed(
    name: str, method: Callable[..., Coroutine[Any, Any, Any]]
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(method)
    async def operation(self: _Tiers, *args: Any, **kwargs: Any) -> Any:
        metrics = recorder()
        if not (metrics.enabled or tracing.active()) or _inside.get():
            return await method(self, *args, **kwargs)
        token = _inside.set(True)
        backend = _deployment(self)
        span = tracing.start(
            tracing.STORE_SPAN, name, {"fiml.store.operation": name, "fiml.store.backend": backend}
        )
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await method(self, *args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.perf_counter() - started
            _inside.reset(token)
            outcome = outcome_of(error)
            if span is not None:
                span.end(error, outcome)
            metrics.store_operation(backend, name, outcome, seconds)

    return operation


def instrument_operations(cls: type, names: Iterable[str]) -> None:
    """Replace each named coroutine method of ``cls`` by its counted and timed version."""
    for name in names:
        setattr(cls, name, _timed(name, getattr(cls, name)))
