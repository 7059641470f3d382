"""The uploaded image's bytes, read from the socket with a bound: a raw ``image/*`` body or a
multipart field ``file``. Nothing past the limit is read or stored (chunked uploads have no
Content-Length to check first)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from serving.gateway.errors import UploadError

MULTIPART_FRAMING = 64 * 1024
"""Room for multipart boundaries and part headers around a file of the upload limit."""

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
"""The request body as OpenAPI shows it (the route reads the stream itself, so FastAPI cannot
infer it)."""


async def read_upload(request: Request, limit: int) -> bytes:
    """The image bytes, at most ``limit`` of them (a multipart body may add 64 KiB of
    framing); 415 for a body that is neither an image nor multipart."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        if content_type and not content_type.startswith(("image/", "application/octet-stream")):
            raise UploadError(
                415,
                f"send the image as image/jpeg or image/png, or as multipart field 'file'; "
                f"got Content-Type {content_type}",
            )
        return await read_body(request, limit)
    return await _file_field(request, await read_body(request, limit + MULTIPART_FRAMING), limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, too_large(int(declared), limit))
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise UploadError(413, too_large(len(body), limit, partial=True))
    except ClientDisconnect:
        raise UploadError(400, "the client went away during the upload") from None
    return bytes(body)


async def _file_field(request: Request, body: bytes, limit: int) -> bytes:
    """The ``file`` field of a multipart body already read (and bounded)."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    # Starlette parses the bounded body we read, not the socket.
    async with Request(request.scope, replay).form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "multipart upload without a file field named 'file'")
        data = await upload.read()
    if len(data) > limit:
        raise UploadError(413, too_large(len(data), limit))
    return data


def too_large(size: int, limit: int, partial: bool = False) -> str:
    """The 413's detail; ``partial``: the body was cut off at ``limit`` (its size unknown)."""
    return (
        f"upload of {'more than ' if partial else ''}{size if not partial else limit:,} bytes "
        f"is over the limit of {limit:,} (gateway --max-upload-mb)"
    )
