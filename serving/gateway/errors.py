"""Refusals and failures as HTTP answers: each one a JSON ``{"detail": …}`` (``ErrorBody``)
with the status that says why.

413 too large, 415 not JPEG/PNG, 400 undecodable (``UploadError``); 503 model server down, 504
too slow (the client's errors, the model server's own message along); even an unexpected
error answers JSON (500), its traceback going to uvicorn's log.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from client import errors
from client.errors import plain_reason
from serving.gateway.schemas import ErrorBody


class UploadError(ValueError):
    """An upload the gateway refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


UPSTREAM_STATUS: dict[type[errors.ClientError], int] = {
    errors.InvalidRequest: 400,  # e.g. a JPEG TensorFlow cannot decode
    errors.RequestTooLarge: 413,
    errors.ServerUnavailable: 503,
    errors.ModelNotFound: 503,  # the model (or pinned version) is not loaded
    errors.DeadlineExceeded: 504,
    errors.ClientClosed: 503,  # the gateway is shutting down
}
"""Model server failures → HTTP; any other client error (a bad answer) is a 502."""


def error_response(status: int, detail: str) -> JSONResponse:
    """The one shape of every refusal (the page shows ``detail`` as it is)."""
    return JSONResponse(ErrorBody(detail=detail).model_dump(), status_code=status)


def upstream_status(error: errors.ClientError) -> int:
    """The HTTP status for a model server failure (its first match in UPSTREAM_STATUS)."""
    return next((s for kind, s in UPSTREAM_STATUS.items() if isinstance(error, kind)), 502)


_WORDING = {
    400: "The image does not decode",
    413: "Too many bytes or pixels",
    415: "Not a JPEG or PNG",
    502: "The model server's answer breaks the contract",
    503: "The model server is unavailable",
    504: "The model server did not answer in time",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these statuses, each with the ErrorBody schema."""
    return {s: {"model": ErrorBody, "description": _WORDING[s]} for s in statuses}


async def _refused(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, UploadError)
    return error_response(error.status, str(error))


async def _upstream(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.ClientError)
    # TF Serving passes TensorFlow's node and graph names on: the reason is what helps here.
    return error_response(upstream_status(error), f"model server: {plain_reason(str(error))}")


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # A bug, not the client's fault: the answer stays JSON (uvicorn logs the traceback).
    return error_response(500, f"internal error: {type(error).__name__}: {error}")


def install_error_handlers(app: FastAPI) -> None:
    """Routes raise; these handlers answer (so no route repeats a try/except)."""
    app.add_exception_handler(UploadError, _refused)
    app.add_exception_handler(errors.ClientError, _upstream)
    app.add_exception_handler(Exception, _unexpected)
