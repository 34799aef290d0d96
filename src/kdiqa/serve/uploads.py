"""Reading uploads: a bounded request body, its images (multipart parts or raw bytes), and decoding with limits.

Everything stays in memory: the body is read up to ``max_upload_bytes`` (413 beyond), multipart bodies are
split with python-multipart's streaming parser (no temporary files), and an image is decoded only after
its format and pixel count have been checked against the settings (the decompression-bomb guard).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from urllib.parse import unquote

from PIL import Image, ImageOps, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..data.io import to_rgb


class UploadError(Exception):
    """A problem with an upload, with the HTTP status it maps to and a one-line message naming the upload."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    name: str  # the part's file name (or field name), "body" for a raw upload
    data: bytes


async def read_body(request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def split_multipart(body: bytes, content_type: str, max_files: int) -> list[Upload]:
    """The parts of a ``multipart/form-data`` body, each as an :class:`Upload` (every part is an image)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart body without a boundary in its Content-Type")
    parts: list[Upload] = []
    state = {"headers": {}, "field": b"", "value": b"", "data": []}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_begin():
        state["headers"], state["data"] = {}, []

    def on_part_data(data, start, end):
        state["data"].append(bytes(data[start:end]))

    def on_part_end():
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        raw = disp.get(b"filename") or disp.get(b"name") or f"part{len(parts) + 1}".encode()
        parts.append(Upload(raw.decode("utf-8", "replace"), b"".join(state["data"])))
        if len(parts) > max_files:
            raise UploadError(400, f"too many images in one request (the limit is {max_files})")

    callbacks = {
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # python-multipart raises MultipartParseError and ValueError subclasses
        raise UploadError(400, f"malformed multipart body ({exc})") from exc
    return parts


RAW_TYPES = ("image/", "application/octet-stream")


async def read_uploads(request, max_bytes: int, max_files: int) -> list[Upload]:
    """The images of a request: the parts of a multipart body, or the raw body as one image."""
    ctype = request.headers.get("content-type", "")
    if ctype and not (ctype.startswith("multipart/form-data") or ctype.startswith(RAW_TYPES)):
        raise UploadError(
            415, f"unsupported Content-Type {ctype.split(';')[0]!r}: send image bytes or multipart/form-data"
        )
    body = await read_body(request, max_bytes)
    if ctype.startswith("multipart/form-data"):
        uploads = split_multipart(body, ctype, max_files)
        if not uploads:
            raise UploadError(400, "the multipart body holds no image")
        return uploads
    name = unquote(request.headers.get("x-filename") or "body")  # the web page URL-encodes it
    if not body:
        raise UploadError(400, f"{name}: empty upload")
    return [Upload(name, body)]


def decode_image(upload: Upload, formats: tuple[str, ...], max_pixels: int) -> Image.Image:
    """An upload as 8-bit RGB (EXIF orientation applied), after checking it is non-empty, in an allowed
    format and within ``max_pixels``; :class:`UploadError` names the upload and the problem otherwise."""
    name = upload.name
    if not upload.data:
        raise UploadError(400, f"{name}: empty upload")
    try:
        img = Image.open(io.BytesIO(upload.data))  # reads the header only
    except Image.DecompressionBombError as exc:
        raise UploadError(400, f"{name}: image too large (decompression-bomb guard: {exc})") from exc
    except UnidentifiedImageError as exc:
        raise UploadError(400, f"{name}: not an image (format not recognised)") from exc
    fmt = "JPEG" if img.format == "MPO" else img.format  # phones' multi-picture JPEGs are JPEGs
    if fmt not in formats:
        raise UploadError(415, f"{name}: {img.format} images are not accepted (allowed: {', '.join(formats)})")
    w, h = img.size
    if w * h > max_pixels:
        raise UploadError(
            400, f"{name}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (decompression-bomb guard)"
        )
    try:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError) as exc:
        raise UploadError(400, f"{name}: cannot decode the image ({exc})") from exc
