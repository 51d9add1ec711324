"""What the web app lets in: the host binding rule, the access token, request sizes, uploads.

- **Binding.** Loopback (``127.0.0.1``, ``::1``, ``localhost``) by default, with no token: then
  only requests whose ``Host`` header names the loopback are answered, so a web page that
  points a name of its own at 127.0.0.1 (DNS rebinding) cannot reach the API. Binding to any
  other address requires a token (:func:`access_token` makes one, printed at start as
  Jupyter does) unless the operator opts out explicitly (``no_auth``).
- **Token.** Accepted as ``Authorization: Bearer TOKEN``, as the ``token`` query parameter (an
  opened link then stores it in an HttpOnly, SameSite=Strict cookie, so images load) or as
  that cookie; compared in constant time.
- **Cross-site writes.** A request that changes something (any method but GET/HEAD) whose
  ``Origin`` header names another site is refused, so another page the user has open cannot
  post to the app.
- **Sizes.** A request body beyond ``max_upload_bytes`` is refused (413) as its bytes arrive,
  before it is parsed; an uploaded image beyond ``max_pixels`` is refused from its header,
  before it is decoded (the package's one loader, :func:`imagelearn.core.images.load_image`).
- **Content.** An upload's type is sniffed from its bytes by Pillow, never taken from its file
  name or declared type; only :data:`UPLOAD_FORMATS` are accepted.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from imagelearn.core.images import ImageReadError, ImageTooLargeError, load_image, open_image

#: Largest request body (bytes): one query photo, or a batch of photos to add.
DEFAULT_MAX_UPLOAD_BYTES = 32 * 2**20
#: Largest uploaded image (width x height); a 40-megapixel photo passes.
DEFAULT_MAX_PIXELS = 50_000_000
#: Image formats (as Pillow names them) accepted in uploads, and their file suffix.
UPLOAD_FORMATS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "PPM": ".ppm",
}
#: Cookie that keeps the token once a link with ``?token=`` was opened.
TOKEN_COOKIE = "imagelearn_token"
#: Host names of the loopback interface.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Methods that change nothing (no cross-site check).
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: Headers on every response: nothing but the app's own files runs or loads in its pages.
SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class UploadError(ValueError):
    """An upload refused; ``status`` is the HTTP status, the message says why, for the user."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the addresses of the loopback interface (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_token(host: str, *, no_auth: bool = False, token: str | None = None) -> str | None:
    """The token the server at ``host`` requires: None on the loopback or with ``no_auth``.

    Parameters
    ----------
    host : str
        The address the server binds to.
    no_auth : bool
        Serve another address without a token (the operator's explicit choice).
    token : str, optional
        The token to require (else a new random one, 43 URL-safe characters).
    """
    if no_auth or (token is None and is_loopback(host)):
        return None
    return token or secrets.token_urlsafe(32)


def _host_name(host_header: str) -> str:
    """The name of a ``Host`` header without its port (``[::1]:8000`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else ""
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _same_origin(origin: str, host_header: str) -> bool:
    """Whether an ``Origin`` header names the host (and port) the request was sent to."""
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host_header.lower()


@dataclass(frozen=True)
class Guard:
    """The request checks of one app (see the module docstring).

    Attributes
    ----------
    token : str or None
        Required on every request when set.
    allowed_hosts : tuple of str or None
        ``Host`` names answered (None: any); the loopback names when serving the loopback
        without a token.
    max_upload_bytes : int
        Largest request body.
    """

    token: str | None
    allowed_hosts: tuple[str, ...] | None
    max_upload_bytes: int

    def problem(self, scope: dict, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """Why the request is refused (status, message), or None when it may go on."""
        host_header = headers.get(b"host", b"").decode("latin-1")
        if (
            self.allowed_hosts is not None
            and _host_name(host_header).lower() not in self.allowed_hosts
        ):
            return 400, f"this server answers only {', '.join(self.allowed_hosts)} (Host header)"
        if self.token is not None and not self._authorised(scope, headers):
            return 401, (
                "a token is required: open the link printed when the server started, or send "
                "'Authorization: Bearer TOKEN'"
            )
        origin = headers.get(b"origin")
        if scope["method"] not in SAFE_METHODS and origin is not None:
            if not _same_origin(origin.decode("latin-1"), host_header):
                return 403, "cross-site requests that change data are refused"
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "malformed Content-Length header"
            if int(length) > self.max_upload_bytes:
                return 413, self.too_large()
        return None

    def too_large(self) -> str:
        return f"request body larger than the limit of {self.max_upload_bytes} bytes"

    def _authorised(self, scope: dict, headers: dict[bytes, bytes]) -> bool:
        candidates = [query_token(scope)]
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if authorization.lower().startswith("bearer "):
            candidates.append(authorization[7:].strip())
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == TOKEN_COOKIE:
                candidates.append(value)
        expected = self.token.encode()
        return any(
            candidate is not None and hmac.compare_digest(candidate.encode(), expected)
            for candidate in candidates
        )


def query_token(scope: dict) -> str | None:
    """The ``token`` query parameter of a request, if any."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


class BodyTooLarge(Exception):
    """Raised by the guarded ``receive`` once a body passes the limit."""


class GuardMiddleware:
    """ASGI middleware applying a :class:`Guard` to every HTTP request and adding
    :data:`SECURITY_HEADERS` to every response; a body is counted as it streams in (chunked
    requests carry no length)."""

    def __init__(self, app, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        refused = self.guard.problem(scope, headers)
        if refused is not None:
            await _send_error(send, *refused)
            return
        received = 0
        exceeded = False

        async def counted_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.guard.max_upload_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def secured_send(message):
            if exceeded:  # the app's answer to the aborted body (its parser's error) is replaced
                if message["type"] == "http.response.start":
                    await _send_error(send, 413, self.guard.too_large())
                return
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, counted_receive, secured_send)
        except BodyTooLarge:
            await _send_error(send, 413, self.guard.too_large())


async def _send_error(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Upload:
    """An uploaded image, checked and decoded.

    Attributes
    ----------
    name : str
        The file name the client gave (for messages only; never a path).
    format : str
        As sniffed from the bytes (a key of :data:`UPLOAD_FORMATS`).
    pixels : ndarray of uint8, shape (height, width, 3)
    data : bytes
        The file as uploaded.
    """

    name: str
    format: str
    pixels: np.ndarray
    data: bytes


def read_upload(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Upload:
    """Check and decode an uploaded image file from its bytes alone.

    Parameters
    ----------
    data : bytes
    name : str
        The client's file name, used in messages only.
    max_pixels : int

    Raises
    ------
    UploadError
        400 for an empty upload, 413 beyond ``max_pixels`` (read from the header, before
        decoding), 415 for something that is not an image of :data:`UPLOAD_FORMATS`, 422 for
        a corrupt or truncated image.
    """
    label = _label(name)
    if not data:
        raise UploadError(400, f"{label}: empty upload")
    with _spooled(data) as path:
        try:
            with open_image(path, max_pixels=max_pixels) as image:
                kind = image.format
            if kind not in UPLOAD_FORMATS:
                raise UploadError(
                    415,
                    f"{label}: {kind or 'unknown'} images are not accepted; "
                    f"send one of {', '.join(UPLOAD_FORMATS)}",
                )
            pixels = load_image(path, "RGB", max_pixels=max_pixels)
        except ImageTooLargeError as error:
            raise UploadError(413, f"{label}: {error.reason}") from None
        except ImageReadError as error:
            status = 415 if "identify" in error.reason else 422
            raise UploadError(status, f"{label}: {error.reason}") from None
    return Upload(label, kind, pixels, data)


def _label(name: str) -> str:
    """A client's file name for messages: its last part, printable, at most 80 characters."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    printable = "".join(c for c in last if c.isprintable())[:80]
    return printable or "upload"


@contextmanager
def _spooled(data: bytes) -> Iterator[Path]:
    """``data`` in a private temporary file (the loader reads files), deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="imagelearn-upload-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        yield path


def safe_file_name(upload: Upload, digest: str) -> str:
    """The name an added upload is stored under: ``<digest[:12]>-<tidy name><suffix>``.

    Only ASCII letters, digits, ``-`` and ``_`` of the client's name are kept (at most 40), and
    the suffix is that of the sniffed format, so the name is never a path, hidden or executable.
    """
    stem = Path(upload.name).stem
    tidy = "".join(c if (c.isascii() and (c.isalnum() or c in "-_")) else "_" for c in stem)
    tidy = tidy.strip("_-")[:40]
    return f"{digest[:12]}-{tidy or 'image'}{UPLOAD_FORMATS[upload.format]}"
