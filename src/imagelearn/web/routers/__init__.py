"""The routes of the web app, one module per area, each with a FastAPI ``router``.

``search`` (by upload, by catalogue id), ``images`` (the paged list, metadata, thumbnails,
files), ``tags`` (keyword search, counts), ``map`` (the embedding map, near-duplicate groups),
``admin`` (add and remove, only when the server is writable).
"""
