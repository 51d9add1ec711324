"""The web app: search a collection by example image or keyword, see why it matched, explore it.

>>> from imagelearn.web import create_app
>>> app = create_app("photos.index")  # doctest: +SKIP

``imagelearn serve INDEX`` runs it with uvicorn; the routes, the page and the safety rules
are described in ``docs/web.md``.
"""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.web.app import create_app
    from imagelearn.web.security import access_token, is_loopback

__all__ = ["access_token", "create_app", "is_loopback"]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
