"""What the routers share: finding an image of the current collection, or a 404."""

from __future__ import annotations

from fastapi import HTTPException, Path

from imagelearn.retrieval.catalogue import ImageRecord
from imagelearn.web.collection import Collection

#: The ``image_id`` path parameter: a catalogue id, nothing else (no path reaches the disk).
ImageId = Path(ge=0, le=2**32 - 1, description="catalogue id of an indexed image")


def record_of(collection: Collection, image_id: int) -> ImageRecord:
    """The catalogue row of a live image, else a 404."""
    record = collection.records.get(image_id)
    if record is None:
        raise HTTPException(404, f"no indexed image has id {image_id}")
    return record
