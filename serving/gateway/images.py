"""Uploaded images in, class-map PNGs, overlays and run-length JSON out (no TensorFlow).

Uploads are checked before any pixel is decoded: the format from the magic bytes (JPEG and
PNG, what the model's ``segment_jpeg`` decodes), the size from the header (a small file can
declare billions of pixels).

    run_length(np.array([[0, 0, 15], [15, 15, 0]], np.uint8))
    # → {'values': [0, 15, 0], 'counts': [2, 3, 1]}
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

from client.overlay import overlay
from serving.gateway.errors import UploadError

_EXIF_ORIENTATION = 0x0112
_SIGNATURES = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}
# What people upload by mistake, to name it in the error.
_KNOWN = {
    b"GIF8": "a GIF",
    b"RIFF": "a RIFF file (WebP?)",
    b"%PDF": "a PDF",
    b"BM": "a BMP",
    b"II*\x00": "a TIFF",
    b"MM\x00*": "a TIFF",
}


@dataclass(frozen=True)
class ImageInfo:
    """What the header says; ``height`` × ``width`` as stored (before any EXIF turn)."""

    format: str  # "jpeg" or "png"
    height: int
    width: int
    rotated: bool = False  # an EXIF orientation other than "as stored" (phone photos)


def sniff(data: bytes) -> str:
    """ "jpeg" or "png" from the magic bytes; UploadError 415 naming what it is otherwise."""
    for signature, kind in _SIGNATURES.items():
        if data.startswith(signature):
            return kind
    what = next((name for magic, name in _KNOWN.items() if data.startswith(magic)), None)
    if what is None:
        what = "empty" if not data else f"bytes starting {data[:8].hex(' ')}"
    raise UploadError(415, f"expected a JPEG or PNG image, got {what}")


def read_header(data: bytes, max_pixels: int) -> ImageInfo:
    """Format and size from the header alone; 413 over ``max_pixels``, 400 if unreadable."""
    kind = sniff(data)
    try:
        # Image.open reads the header only; the bomb check is ours (below), not PIL's.
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            # JPEG keeps EXIF in a header segment; PNG's eXIf chunk may follow the pixels,
            # and reading it would decode them: phone photos are JPEGs.
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1) if kind == "jpeg" else 1
    except Image.DecompressionBombError:
        width = height = None
    except (OSError, SyntaxError, ValueError):
        raise UploadError(
            400, f"not a readable {kind.upper()}: its header is damaged or cut short"
        ) from None
    if width is None or width * height > max_pixels:
        # PIL refuses headers past ~180 M pixels itself, without saying the size.
        size = "more" if width is None else f"{width}×{height} = {width * height:,}"
        raise UploadError(
            413,
            f"the image header declares {size} pixels, over the limit of {max_pixels:,} "
            "(gateway --max-pixels); send a smaller image",
        )
    return ImageInfo(kind, height, width, rotated=orientation not in (1, None))


def decode_bgr(data: bytes) -> np.ndarray:
    """The image as stored, as an OpenCV BGR array (for the overlay); 400 if it does not
    decode. EXIF orientation is ignored here, as TensorFlow's decoder ignores it."""
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise UploadError(400, "the image does not decode (truncated or corrupt file?)")
    return image


def decode_upright_bgr(data: bytes) -> np.ndarray:
    """The image turned by its EXIF orientation, as people see it, as an OpenCV BGR array."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
            return cv2.cvtColor(np.asarray(upright), cv2.COLOR_RGB2BGR)
    except (OSError, SyntaxError, ValueError):
        raise UploadError(400, "the image does not decode (truncated or corrupt file?)") from None


def class_map_png(class_map: np.ndarray, palette: np.ndarray) -> bytes:
    """A palettized PNG: pixel values are class ids, the palette gives their colours (as VOC's
    SegmentationClass masks)."""
    image = Image.fromarray(np.ascontiguousarray(class_map), mode="P")
    image.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def overlay_jpeg(
    image_bgr: np.ndarray, class_map: np.ndarray, palette: np.ndarray, alpha: float, quality: int
) -> bytes:
    """The image with the class colours blended in (``alpha`` 1: colours only), as a JPEG."""
    blended = overlay(image_bgr, class_map, alpha, palette=palette, color="bgr")
    ok, encoded = cv2.imencode(".jpg", blended, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the overlay")
    return encoded.tobytes()


def run_length(class_map: np.ndarray) -> dict[str, list[int]]:
    """Row-major runs: ``values[i]`` repeated ``counts[i]`` times rebuilds the flattened map."""
    flat = np.asarray(class_map).reshape(-1)
    if flat.size == 0:
        return {"values": [], "counts": []}
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    counts = np.diff(np.append(starts, flat.size))
    return {"values": flat[starts].tolist(), "counts": counts.tolist()}
