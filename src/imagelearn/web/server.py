"""Running the web app: bind the address, announce the URL (with its token), serve with uvicorn."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

from imagelearn.core.errors import ImagelearnError, ParameterError
from imagelearn.web.security import LOOPBACK_NAMES, access_token, is_loopback

#: The address and port served by default.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port).

    Raises
    ------
    ParameterError
        The address cannot be bound (in use, not an address of this machine): ``parameter``
        is ``"port"`` or ``"host"``.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ParameterError("host", f"{host}: not an address of this machine ({error})") from None
    family, kind, protocol, _, address = infos[0]
    server = socket.socket(family, kind, protocol)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(address)
    except OSError as error:
        server.close()
        parameter = "port" if error.errno == 98 else "host"  # EADDRINUSE
        raise ParameterError(
            parameter, f"cannot serve on {host}:{port}: {error.strerror}"
        ) from None
    server.listen(2048)
    return server


def page_url(host: str, port: int, token: str | None) -> str:
    """The URL that opens the page (with ``?token=`` when one is required)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{port}/"
    return f"{url}?token={quote(token)}" if token else url


def serve(
    index: str | os.PathLike | None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    no_auth: bool = False,
    announce: Callable[[str], None] = print,
    **app_options,
) -> None:
    """Serve the index at ``index`` until interrupted.

    Parameters
    ----------
    index : path-like or None
        None: the studio or the review only (``studio=``, ``review=`` in ``app_options``).
    host, port
        The address to bind; beyond the loopback a token is required unless ``no_auth``.
    no_auth : bool
        Serve an address beyond the loopback without a token.
    announce : callable
        Called with the lines to show once the address is bound (the URL first).
    **app_options
        Passed to :func:`imagelearn.web.create_app` (``model``, ``clusters``, ``writable``,
        ``workers``...).

    Raises
    ------
    BundleError
        ``index`` is not an index.
    ParameterError
        The address cannot be bound.
    """
    try:
        import uvicorn

        from imagelearn.web.app import create_app
    except ModuleNotFoundError as error:
        raise ImagelearnError(
            f"the web app needs {error.name}: pip install 'imagelearn[web]'"
        ) from None

    token = access_token(host, no_auth=no_auth)
    loopback = is_loopback(host)
    # on the loopback, only requests naming it are answered (DNS rebinding); beyond it, the token
    hosts = (*LOOPBACK_NAMES, host.strip("[]").lower()) if loopback else None
    if app_options.get("model") is not None:
        announce(
            f"imagelearn: tagging the images of {index} with the classes of "
            f"{app_options['model']} (a minute per few hundred images the first time; cached)"
        )
    app = create_app(index, token=token, allowed_hosts=hosts, **app_options)
    listening = bind(host, port)
    bound_port = listening.getsockname()[1]
    reviewed = " ".join(str(path) for path in app_options.get("review") or ()) or None
    served = " and ".join(
        str(part) for part in (index, app_options.get("studio"), reviewed) if part is not None
    )
    announce(f"imagelearn: serving {served} at {page_url(host, bound_port, token)}")
    if app_options.get("studio") is not None:
        announce(f"  studio: saves go to {app.state.studio.out}")
    if reviewed is not None:
        announce(f"  review: {page_url(host, bound_port, token)}#/review")
    if not loopback:
        who = "anyone who can reach it can use it" if token is None else "the link carries a token"
        announce(f"  reachable from other machines: {who}")
    if app_options.get("writable"):
        announce("  writable: images can be added and removed through the page")
    announce("  press Ctrl+C to stop")
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listening])


@contextmanager
def running(app, host: str = DEFAULT_HOST) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` in a background thread; yields its base URL.

    The socket listens before the server starts, so a client may connect at once (it waits in
    the backlog until the server accepts); the server stops on leaving the block.
    """
    import uvicorn

    listening = bind(host, 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listening]}, name="imagelearn-server", daemon=True
    )
    thread.start()
    try:
        yield page_url(host, listening.getsockname()[1], None).rstrip("/")
    finally:
        server.should_exit = True
        thread.join()
        listening.close()
