"""Calling a user function as the Python worker does: arguments by binding name, an optional
context, Out[...] objects for output bindings, async functions on the loop and sync ones on a
thread pool, outputs flushed only after success, one log line per invocation."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import azure.functions as func
from azure.functions._abc import TraceContext

from devstack.host.indexing import FunctionSpec
from devstack.host.outputs import OutputSender

log = logging.getLogger("devstack.host")
T = TypeVar("T")


class _Out(func.Out[T], Generic[T]):
    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[return-value]


class _TraceContext(TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _Context(func.Context):
    def __init__(self, invocation_id: str, function_name: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._trace = _TraceContext()
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return "."

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> None:  # type: ignore[override]
        return None


Outcome = Literal["succeeded", "failed"]


class InvocationFailed(Exception):
    """The user function raised, or its outputs could not be delivered; `__cause__` is the error."""


@dataclass
class Invoker:
    outputs: OutputSender
    executor: ThreadPoolExecutor

    async def invoke(self, spec: FunctionSpec, trigger_value: Any, *, detail: str = "") -> Any:
        """Run the function; return its return value, or raise InvocationFailed."""
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {spec.trigger_binding.name: trigger_value}
        outs = {b.name: _Out[Any]() for b in spec.outputs if b.name != "$return"}
        kwargs.update(outs)
        if spec.context_param:
            kwargs[spec.context_param] = _Context(invocation_id, spec.name)
        start = time.perf_counter()
        outcome: Outcome = "succeeded"
        error = ""
        try:
            if spec.is_async:
                result = await spec.user_function(**kwargs)
            else:
                call = functools.partial(contextvars.copy_context().run, spec.user_function, **kwargs)
                result = await asyncio.get_running_loop().run_in_executor(self.executor, call)
            await self._flush_outputs(spec, outs, result)
            return result
        except Exception as exc:
            outcome, error = "failed", f" error={type(exc).__name__}: {exc}"
            raise InvocationFailed(f"function {spec.name!r} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            took = (time.perf_counter() - start) * 1000
            level = logging.INFO if outcome == "succeeded" else logging.ERROR
            log.log(
                level,
                "invocation function=%s trigger=%s%s id=%s duration_ms=%.1f outcome=%s%s",
                spec.name, spec.trigger_type, f" {detail}" if detail else "", invocation_id, took, outcome, error,
            )

    async def _flush_outputs(self, spec: FunctionSpec, outs: dict[str, _Out[Any]], result: Any) -> None:
        returns = next((b for b in spec.outputs if b.name == "$return"), None)
        if returns is None and result is not None and spec.trigger_type != "httpTrigger":
            raise TypeError("function without a $return binding returned a non-None value")
        for target in spec.servicebus_outputs:
            value = result if target.name == "$return" else outs[target.name].get()
            if value is not None:
                await self.outputs.send(spec.name, target, value)
