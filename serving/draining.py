"""Shutdown that loses no request the server has received.

gRPC Python hands every RPC it receives to the server's thread pool; with more callers than
request threads, the rest wait in the pool's queue. Refusing in the handler turned those queued
calls away at SIGTERM, though they had arrived before it. So the refusal is made at arrival
(``ArrivalGate``, an interceptor: gRPC runs interceptors as a call comes in, before queueing
it), and the count shutdown waits for is the pool's (``CountingThreadPool``: every RPC from
submission to the end of its work, queued ones included).

    gate = ArrivalGate()
    pool = CountingThreadPool(8, gate)
    server = grpc.server(pool, interceptors=[gate])
    ...
    gate.close()                     # new RPCs: UNAVAILABLE "the server is shutting down"
    pool.calls.wait_idle(grace)      # every received RPC answered
    server.stop(0)
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc

from serving.servable import InFlight

SHUTTING_DOWN = "the server is shutting down"
# Health checks are answered during the drain (NOT_SERVING), so a probe sees why.
_ALWAYS_ADMITTED = "/grpc.health.v1.Health/"


class CountingThreadPool(futures.ThreadPoolExecutor):
    """A thread pool whose ``calls`` counts each work item submitted while ``gate`` is open,
    from submission to its end. What comes after it closed is a refusal (or a health check):
    counting those would let clients retrying in a loop keep the count from ever reaching 0."""

    def __init__(self, max_workers: int, gate: ArrivalGate, thread_name_prefix: str = ""):
        super().__init__(max_workers, thread_name_prefix=thread_name_prefix)
        self.gate = gate
        self.calls = InFlight()

    def submit(self, fn, /, *args, **kwargs) -> futures.Future:
        if self.gate.closed:
            return super().submit(fn, *args, **kwargs)
        self.calls.enter()

        def counted():
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls.leave()

        try:
            return super().submit(counted)
        except BaseException:  # not queued (the pool shut down): not counted either
            self.calls.leave()
            raise


def _refuse(request, context: grpc.ServicerContext):
    context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)


_REFUSAL = grpc.unary_unary_rpc_method_handler(_refuse)


class ArrivalGate(grpc.ServerInterceptor):
    """Admits every RPC until ``close()``, then refuses new ones with UNAVAILABLE (health
    checks excepted); RPCs admitted before go on."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def intercept_service(self, continuation, handler_call_details):
        if self._closed.is_set() and not handler_call_details.method.startswith(_ALWAYS_ADMITTED):
            return _REFUSAL
        return continuation(handler_call_details)
