"""The COLMAP benchmark's parsing of ``colmap vocab_tree_retriever``'s output."""

from __future__ import annotations

import pytest
from bench.bench_colmap import parse_retrieval

# COLMAP 3.8's output for two queries; indexing lines come first (without times once the
# index is read from a file), and a name may contain spaces
RETRIEVER_OUTPUT = """\
Indexing image [1/3]
Indexing image [2/3] in 0.048s
Indexing image [3/3]
Querying for image ukbench00001.jpg [1/2] in 0.066s
  image_id=1, image_name=ukbench00001.jpg, score=0.512442
  image_id=4, image_name=ukbench00002.jpg, score=0.186446
  image_id=2, image_name=a photo.jpg, score=0.169509
Querying for image a photo.jpg [2/2] in 1.250s
"""


def test_parse_retrieval_reads_rankings_in_order_and_query_seconds() -> None:
    results = parse_retrieval(RETRIEVER_OUTPUT)

    assert list(results) == ["ukbench00001.jpg", "a photo.jpg"]
    ranking, seconds = results["ukbench00001.jpg"]
    assert ranking == ["ukbench00001.jpg", "ukbench00002.jpg", "a photo.jpg"]
    assert seconds == pytest.approx(0.066)
    assert results["a photo.jpg"] == ([], pytest.approx(1.25))


def test_parse_retrieval_ignores_results_before_any_query() -> None:
    assert parse_retrieval("  image_id=1, image_name=x.jpg, score=0.5\n") == {}
