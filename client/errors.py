"""What can go wrong between the edge computer and the model server, as a small hierarchy.

gRPC status codes become exceptions a planner can catch by meaning, each carrying the server's
own message (TF Serving and the embedded server name the problem there):

    try:
        segmentation = client.segment(frame)
    except ServerUnavailable:
        ...  # keep driving on the last map, or stop
    except ClientError as error:
        log(error.code, error)  # anything else
"""

from __future__ import annotations

import re

import grpc


class ClientError(Exception):
    """Base of every client error; ``code`` is the gRPC status (None for local errors)."""

    code: grpc.StatusCode | None = None

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, target: str = ""):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.target = target


class InvalidFrame(ClientError, ValueError):
    """The frame cannot be sent: wrong type, dtype, shape or color order (checked locally)."""


class InvalidRequest(ClientError):
    """The server refused the input (INVALID_ARGUMENT, OUT_OF_RANGE): size, dtype, bad bytes."""


class ModelNotFound(ClientError):
    """No such model or version on the server (NOT_FOUND)."""


class SignatureMismatch(ClientError):
    """The model lacks the signature or input the client calls (FAILED_PRECONDITION): it was
    not exported by this project's exporter, or by an incompatible version of it."""


class ServerUnavailable(ClientError):
    """No server answered within the deadline (UNAVAILABLE after retries, or not ready), or
    the server cancelled the call as it shut down (CANCELLED)."""


class TlsMismatch(ServerUnavailable):
    """TLS on one side only (a plain-text client at a TLS port, or the reverse), or a server
    certificate the client's CA did not sign: raised after the first attempt, as retrying
    cannot help."""


class DeadlineExceeded(ClientError):
    """The server did not answer within the deadline (DEADLINE_EXCEEDED)."""


class RequestTooLarge(ClientError):
    """A message exceeded a size limit or the server ran out of resources (RESOURCE_EXHAUSTED)."""


class ServerError(ClientError):
    """Any other failure on the server side (INTERNAL, UNKNOWN, UNIMPLEMENTED, …)."""


class InvalidResponse(ClientError):
    """The answer does not follow the SavedModel contract (missing output, wrong shape) or is
    not a PredictResponse at all."""


class ClientClosed(ClientError):
    """The client was closed: no new calls, and calls waiting to retry give up."""


_BY_CODE: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: ModelNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: SignatureMismatch,
    grpc.StatusCode.UNAVAILABLE: ServerUnavailable,
    grpc.StatusCode.CANCELLED: ServerUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RequestTooLarge,
}


def from_rpc_error(error: grpc.RpcError, target: str, attempts: int = 1) -> ClientError:
    """The exception for a failed call, with the status name and the server's message."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    after = f" (after {attempts} attempts)" if attempts > 1 else ""
    kind = _BY_CODE.get(code, ServerError)
    return kind(f"{target}: {code.name}{after}: {details}", code=code, target=target)


# What TensorFlow wraps a kernel's message in: graph and function names, node annotations,
# Python stack traces (or their placeholder). A driver or an HTTP user needs the reason only.
_TENSORFLOW_FRAMING = re.compile(
    r"Graph execution error:\s*"
    r"|Detected at node .*? defined at \(most recent call last\):\n(?:(?:  .*)?\n)*?"
    r"(?=\S)"
    r"|<stack traces unavailable>\n?"
    r"|^Node: .*\n"
    r"|\{\{function_node [^}]*\}\}\s*"
    r"|\s*\[\[(?:\{\{[^}]*\}\})+\]\]"
    r"|\s*\[Op:[^\]]*\](?: name: \S*)?",
    re.MULTILINE,
)


def plain_reason(message: str) -> str:
    """A TensorFlow error message without TensorFlow's framing: the kernel's reason alone.

    >>> plain_reason("Graph execution error:\\n\\nDetected at node d defined at (most recent "
    ...     "call last):\\n<stack traces unavailable>\\nInvalid JPEG data.\\n\\t "
    ...     "[[{{node d}}]] [Op:__inference_f_12]")
    'Invalid JPEG data.'
    """
    reason = _TENSORFLOW_FRAMING.sub("", message).strip()
    return reason or message.strip()
