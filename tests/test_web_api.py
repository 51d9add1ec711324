"""The web app's REST API with FastAPI's test client, on a small real index (28 UKBench photos,
7 objects of 4 views, with global descriptors): every route, and every bad request of issue #13."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient
from PIL import Image

from conftest import data_path
from imagelearn.core.errors import ParameterError
from imagelearn.web import access_token, create_app, is_loopback
from imagelearn.web.security import TOKEN_COOKIE, Upload, safe_file_name
from imagelearn.web.server import bind, page_url

#: Photos in the test index: 7 UKBench objects, 4 views each (ids 0-27 in file order).
N_IMAGES = 28
#: A request body limit small enough to exceed cheaply in a test.
MAX_UPLOAD = 2**21
BASE = "http://127.0.0.1"


def ukbench(number: int) -> Path:
    return data_path("ukbench", f"ukbench{number:05d}.jpg")


def web_index(tmp_path_factory) -> Path:
    """The test index, built once per session (the browser tests use it too)."""
    directory = tmp_path_factory.getbasetemp() / "web-index"
    if not (directory / "manifest.json").is_file():
        from imagelearn.retrieval.runs import build_run

        build_run(
            [str(ukbench(number)) for number in range(N_IMAGES)],
            directory,
            vocabulary="kmeans",
            n_words=512,
            max_keypoints=400,
            max_side=480,
            train_images=N_IMAGES,
            global_descriptor=True,
            n_jobs=1,
            cache_dir=False,
        )
    return directory


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``directory`` (itself included) with its modification time and size."""
    return {
        str(path.relative_to(directory)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in [directory, *directory.rglob("*")]
    }


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    return web_index(tmp_path_factory)


@pytest.fixture(scope="module")
def thumbnails(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("thumbnails")


@pytest.fixture(scope="module")
def clusters(tmp_path_factory) -> Path:
    """A clustering run's table: each object's four views one cluster (``cluster N`` for
    object N), as ``cluster fit`` writes it."""
    run = tmp_path_factory.mktemp("clusters")
    rows = ["path,cluster,distance"]
    rows += [f"{ukbench(n)},{n // 4},{0.1 + 0.01 * (n % 4)}" for n in range(N_IMAGES)]
    (run / "clusters.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def client(index_dir, thumbnails, clusters):
    app = create_app(
        index_dir, clusters=clusters, thumbnail_dir=thumbnails, max_upload_bytes=MAX_UPLOAD
    )
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def writable(index_dir, tmp_path_factory):
    """A writable app over a copy of the index."""
    copy = tmp_path_factory.mktemp("writable") / "index"
    shutil.copytree(index_dir, copy)
    app = create_app(
        copy,
        writable=True,
        thumbnail_dir=tmp_path_factory.mktemp("thumbnails-writable"),
        max_upload_bytes=MAX_UPLOAD,
    )
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def upload(client, path_or_bytes, name="query.jpg", **form):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return client.post("/api/search", files={"file": (name, data, "image/jpeg")}, data=form)


def refused(response, status: int, words: str = "") -> str:
    """Assert a refusal: the status, a JSON message (with ``words``), no trace."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "Traceback" not in detail
    assert words.lower() in detail.lower(), detail
    return detail


# ---------------------------------------------------------------- searching


def test_info_describes_the_collection(client):
    info = client.get("/api/info").json()
    assert info["images"] == N_IMAGES and info["writable"] is False and info["auth"] is False
    assert info["modes"] == ["local", "global", "hybrid"] and info["default_mode"] == "hybrid"
    assert info["max_upload_bytes"] == MAX_UPLOAD
    assert info["tag_sources"] == ["imagenet", "cluster"]


def test_an_uploaded_photo_ranks_its_three_other_views_first(client):
    response = upload(client, ukbench(6), top=5)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["mode"] == "hybrid" and answer["query"]["width"] == 320
    ids = [row["id"] for row in answer["results"]]
    assert ids[0] == 6 and set(ids[:4]) == {4, 5, 6, 7}, ids
    best = answer["results"][0]
    assert best["path"] == "ukbench00006.jpg" and best["inliers"] >= 100
    assert all(row["inliers"] >= 30 for row in answer["results"][:4])
    other = answer["results"][1]
    # the correspondences are the homography's inliers: it maps each query point onto its match
    homography = np.array(other["homography"])
    query = np.array(other["query_points"])
    database = np.array(other["database_points"])
    assert homography.shape == (3, 3) and query.shape == database.shape == (other["inliers"], 2)
    mapped = np.c_[query, np.ones(len(query))] @ homography.T
    error = np.linalg.norm(mapped[:, :2] / mapped[:, 2:] - database, axis=1)
    assert np.median(error) < 4.0, np.median(error)


def test_every_mode_and_option_answers(client):
    for mode in ("local", "global", "hybrid"):
        answer = upload(client, ukbench(5), mode=mode, top=4).json()
        assert answer["mode"] == mode and answer["results"][0]["id"] == 5
    unverified = upload(client, ukbench(5), mode="local", verify="false", top=4).json()
    assert all(row["inliers"] == 0 and row["homography"] is None for row in unverified["results"])
    expanded = upload(client, ukbench(5), mode="local", expand="true", top=4).json()
    assert {row["id"] for row in expanded["results"]} == {4, 5, 6, 7}


def test_a_box_searches_only_that_region_of_the_query(client):
    x, y, w, h = 80, 60, 160, 120
    answer = upload(client, ukbench(13), roi=f"{x},{y},{w},{h}", top=4).json()
    assert answer["query"]["roi"] == [x, y, w, h]
    assert answer["results"][0]["id"] == 13
    points = np.array(answer["results"][0]["query_points"])
    assert len(points) >= 10
    assert (points[:, 0] >= x).all() and (points[:, 0] < x + w).all()
    assert (points[:, 1] >= y).all() and (points[:, 1] < y + h).all()
    # a box beyond the image is clipped to it
    clipped = upload(client, ukbench(13), roi="280,200,500,500", top=2).json()
    assert clipped["query"]["roi"] == [280, 200, 40, 40]


def test_search_by_catalogue_id_needs_no_upload(client):
    answer = client.get("/api/search/21", params={"top": 4}).json()
    assert answer["query"]["id"] == 21 and answer["query"]["path"] == "ukbench00021.jpg"
    assert {row["id"] for row in answer["results"]} == {20, 21, 22, 23}
    local = client.get("/api/search/2", params={"mode": "local", "top": 3}).json()
    assert local["mode"] == "local" and local["results"][0]["id"] == 2


# ---------------------------------------------------------------- the collection


def test_the_paged_list_and_its_filters(client):
    page = client.get("/api/images", params={"offset": 8, "limit": 5}).json()
    assert page["total"] == N_IMAGES and [item["id"] for item in page["items"]] == [
        8,
        9,
        10,
        11,
        12,
    ]
    item = page["items"][0]
    assert item["path"] == "ukbench00008.jpg" and item["folder"] == ""
    assert (item["width"], item["height"]) == (320, 240)
    chosen = client.get("/api/images", params={"ids": "7,3,999,3"}).json()
    assert [item["id"] for item in chosen["items"]] == [7, 3] and chosen["total"] == 2
    assert client.get("/api/images", params={"folder": "elsewhere"}).json()["total"] == 0
    assert client.get("/api/folders").json() == {"folders": {"": N_IMAGES}}


def test_metadata_thumbnail_and_file_by_id(client, thumbnails):
    item = client.get("/api/images/3").json()
    assert item["path"] == "ukbench00003.jpg" and item["n_features"] > 100
    assert item["bytes"] == ukbench(3).stat().st_size and len(item["sha256"]) == 64
    response = client.get("/api/images/3/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    thumbnail = Image.open(io.BytesIO(response.content))
    assert max(thumbnail.size) == 256 and thumbnail.size == (256, 192)
    entry = thumbnails / item["sha256"][:2] / f"{item['sha256']}-256.jpg"
    made = entry.stat().st_mtime_ns
    assert client.get("/api/images/3/thumbnail").content == response.content
    assert entry.stat().st_mtime_ns >= made and len(list(thumbnails.rglob("*.jpg"))) == 1
    original = client.get("/api/images/3/file")
    assert original.headers["content-type"] == "image/jpeg"
    assert original.content == ukbench(3).read_bytes()


def test_the_page_and_the_openapi_schema_are_served(client):
    page = client.get("/")
    assert (
        page.status_code == 200 and '<script type="module" src="/static/js/main.js">' in page.text
    )
    assert client.get("/static/js/main.js").headers["content-type"].startswith("text/javascript")
    schema = client.get("/api/openapi.json").json()
    for path in ("/api/search", "/api/search/{image_id}", "/api/images", "/api/images/{image_id}"):
        assert path in schema["paths"]
    assert client.get("/docs").status_code == 404  # FastAPI's pages load scripts from a CDN


def test_every_response_carries_the_security_headers(client):
    for response in (client.get("/"), client.get("/api/info"), client.get("/api/images/999")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"


# ---------------------------------------------------------------- tags, map, duplicates


def test_tags_are_counted_and_searched_by_keyword(client):
    tags = client.get("/api/images/21").json()["tags"]
    imagenet = [tag for tag in tags if tag["source"] == "imagenet"]
    assert imagenet and ("cluster", "cluster 5") in [(tag["source"], tag["name"]) for tag in tags]
    name = imagenet[0]["name"]
    counts = client.get("/api/tags", params={"prefix": name[:3], "top": 500}).json()["tags"]
    assert name in [tag["name"] for tag in counts] and all(tag["count"] >= 1 for tag in counts)
    found = client.get("/api/tags/search", params={"q": name[:4]}).json()
    assert 21 in [row["id"] for row in found["results"]]
    assert all(
        row["tag"]["name"].lower().startswith(name[:4].lower())
        or row["tag"]["source"] == "imagenet"
        for row in found["results"]
    )
    scores = [row["tag"]["score"] for row in found["results"]]
    assert scores == sorted(scores, reverse=True)
    clusters = client.get("/api/tags", params={"source": "cluster"}).json()["tags"]
    assert len(clusters) == 7 and all(tag["count"] == 4 for tag in clusters)
    page = client.get("/api/images", params={"limit": 2}).json()
    assert all(item["tags"] for item in page["items"])


def test_a_keyword_filters_the_visual_results(client):
    name = client.get("/api/images/21").json()["tags"][0]["name"]
    plain = upload(client, ukbench(21), top=20).json()["results"]
    filtered = upload(client, ukbench(21), top=20, keyword=name).json()
    assert filtered["keyword"] == name and filtered["results"]
    assert filtered["results"][0]["id"] == 21
    having = {
        row["id"]
        for row in client.get("/api/tags/search", params={"q": name, "top": 500}).json()["results"]
    }
    assert {row["id"] for row in filtered["results"]} <= having
    assert len(filtered["results"]) <= len(plain)
    nothing = client.get("/api/search/21", params={"keyword": "zzzqqq"}).json()
    assert nothing["results"] == []


def test_the_grid_filters_by_tag_and_cluster(client):
    chosen = client.get("/api/images", params={"cluster": "cluster 3"}).json()
    assert [item["id"] for item in chosen["items"]] == [12, 13, 14, 15]
    assert client.get("/api/images", params={"cluster": "cluster 30"}).json()["total"] == 0
    name = client.get("/api/images/21").json()["tags"][0]["name"]
    tagged = client.get("/api/images", params={"tag": name, "limit": 500}).json()
    assert 21 in [item["id"] for item in tagged["items"]]
    assert all(name in [t["name"] for t in item["tags"]] for item in tagged["items"])


def test_the_map_places_every_image(client):
    placed = client.get("/api/map").json()
    assert sorted(placed["ids"]) == list(range(N_IMAGES))
    xy = np.c_[placed["x"], placed["y"]]
    assert xy.shape == (N_IMAGES, 2) and xy.min() >= 0 and xy.max() <= 1
    # views of one object lie nearer one another than images of different objects
    objects = np.array(placed["ids"]) // 4
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    same = objects[:, None] == objects[None]
    assert np.median(distances[same & ~np.eye(N_IMAGES, dtype=bool)]) < np.median(distances[~same])


def test_a_model_that_is_no_classifier_is_refused_at_start(index_dir, tmp_path):
    from imagelearn.core.bundle import BundleError

    with pytest.raises(BundleError):
        create_app(index_dir, model=tmp_path)
    with pytest.raises(BundleError, match="no cluster run here"):
        create_app(index_dir, clusters=tmp_path)


# ---------------------------------------------------------------- bad requests


def png_bomb(width: int, height: int) -> bytes:
    """A valid grayscale PNG of ``width`` x ``height`` zeros: a few hundred KB that decode to
    ``width * height`` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_a_png_decompression_bomb_is_refused_from_its_header(client):
    bomb = png_bomb(12_000, 12_000)
    assert len(bomb) < 500_000
    refused(upload(client, bomb, "bomb.png"), 413, "12000x12000 pixels exceeds the limit")


def test_an_oversized_upload_is_refused_before_it_is_parsed(client):
    big = ukbench(0).read_bytes() * (MAX_UPLOAD // ukbench(0).stat().st_size + 1)
    refused(upload(client, big), 413, "larger than the limit")

    def chunks():  # no Content-Length: counted as it streams in
        yield b'--abc\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"x" * 65536

    response = client.post(
        "/api/search",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=abc"},
    )
    refused(response, 413, "larger than the limit")


def test_corrupt_and_foreign_files_are_refused_by_their_content(client):
    corrupt = data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg")
    refused(upload(client, corrupt), 415, "not an image format")
    truncated = ukbench(1).read_bytes()[:30_000]
    refused(upload(client, truncated), 422, "truncated")
    refused(upload(client, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x.jpg"), 415)
    refused(upload(client, b"", "empty.jpg"), 400, "empty upload")
    # the name and declared type are not trusted: a JPEG named .svg is searched as the JPEG it is
    disguised = data_path("bad_inputs", "formats_images", "ukbench09380.svg")
    assert upload(client, disguised, "photo.svg").status_code == 200
    pdf = b"%PDF-1.4\n" + b"0" * 200
    refused(upload(client, pdf, "doc.jpg"), 415)


def test_an_image_without_local_features_is_a_422_in_local_mode(client):
    flat = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(flat, "PNG")
    refused(upload(client, flat.getvalue(), "flat.png", mode="local"), 422, "no local features")


@pytest.mark.parametrize(
    "path",
    [
        "/api/images/../../etc/passwd",
        "/api/images/..%2F..%2Fetc%2Fpasswd",
        "/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
        "/api/images/3%2F..%2F..%2Fpyproject.toml/file",
        "/static/../../pyproject.toml",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/..%2F..%2Fapp.py",
    ],
)
def test_no_path_from_the_client_reaches_the_filesystem(client, path):
    response = client.get(path)
    assert response.status_code in (404, 422), (path, response.status_code)
    assert "root:" not in response.text and "[project]" not in response.text


def test_unknown_ids_are_404(client):
    for path in ("/api/images/999", "/api/images/999/thumbnail", "/api/images/999/file"):
        refused(client.get(path), 404, "no indexed image has id 999")
    refused(client.get("/api/search/999"), 404, "no indexed image has id 999")
    refused(client.get("/api/images/-1"), 422, "greater than or equal to 0")
    refused(client.get("/api/images/99999999999"), 422)
    refused(client.get("/api/images/abc"), 422)


def test_malformed_parameters_are_422_with_a_message(client):
    refused(upload(client, ukbench(0), roi="1,2,3"), 422, "roi: expected x,y,w,h")
    refused(upload(client, ukbench(0), roi="nan,0,10,10"), 422, "roi")
    refused(upload(client, ukbench(0), roi="1e999,0,10,10"), 422, "roi")
    refused(upload(client, ukbench(0), roi="350,0,50,50"), 422, "leaves less than 8x8")
    refused(upload(client, ukbench(0), top="0"), 422, "top")
    refused(upload(client, ukbench(0), mode="fast"), 422, "mode")
    refused(upload(client, ukbench(0), verify="maybe"), 422, "verify")
    refused(client.post("/api/search", data={"top": "3"}), 422, "file: field required")
    refused(client.get("/api/images", params={"limit": 10_000}), 422, "limit")
    refused(client.get("/api/images", params={"ids": "1,../2"}), 422, "ids")
    refused(client.get("/api/duplicates", params={"threshold": "2"}), 422, "threshold")
    refused(client.get("/api/tags", params={"source": "elsewhere"}), 422, "source")
    refused(client.get("/api/tags/search"), 422, "q: field required")
    bad_multipart = client.post(
        "/api/search",
        content=b"--abc\r\nContent-Disposition: form-data; name=file\r\n\r\nxx",
        headers={"content-type": "multipart/form-data; boundary=abc"},
    )
    assert 400 <= bad_multipart.status_code < 500 and isinstance(
        bad_multipart.json()["detail"], str
    )


def test_wrong_methods_are_405(client):
    for method, path in (
        ("PUT", "/api/images/3"),
        ("PATCH", "/api/images"),
        ("GET", "/api/search"),
        ("DELETE", "/api/search/3"),
        ("POST", "/api/info"),
        ("POST", "/api/images/3/thumbnail"),
    ):
        refused(client.request(method, path), 405, "method not allowed")


def test_a_read_only_server_refuses_to_add_or_remove(client, index_dir):
    files = {"files": ("new.jpg", ukbench(30).read_bytes(), "image/jpeg")}
    refused(client.post("/api/images", files=files), 403, "read-only")
    refused(client.delete("/api/images/3"), 403, "read-only")
    assert client.get("/api/info").json()["images"] == N_IMAGES
    assert not (index_dir / "uploads").exists()


def test_requests_naming_another_host_are_refused_on_the_loopback(client):
    refused(client.get("/api/info", headers={"host": "attacker.example"}), 400, "host header")
    assert client.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/api/info", headers={"host": "[::1]:8000"}).status_code == 200


def test_cross_site_writes_are_refused(client):
    response = client.post(
        "/api/search",
        files={"file": ("q.jpg", ukbench(0).read_bytes(), "image/jpeg")},
        headers={"origin": "https://attacker.example"},
    )
    refused(response, 403, "cross-site")
    same = client.post(
        "/api/search",
        files={"file": ("q.jpg", ukbench(0).read_bytes(), "image/jpeg")},
        data={"top": "1"},
        headers={"origin": BASE},
    )
    assert same.status_code == 200


def test_a_token_is_required_when_set(index_dir, thumbnails):
    token = "s3cret-token"
    app = create_app(index_dir, token=token, allowed_hosts=None, thumbnail_dir=thumbnails)
    with TestClient(app, base_url="http://192.0.2.7:8000") as other:
        refused(other.get("/api/info"), 401, "token is required")
        refused(other.get("/"), 401, "token is required")
        refused(other.get("/api/images/3/thumbnail"), 401)
        refused(other.get("/api/info", headers={"authorization": "Bearer wrong"}), 401)
        refused(other.get("/api/info", params={"token": "s3cret"}), 401)
        bearer = {"authorization": f"Bearer {token}"}
        assert other.get("/api/info", headers=bearer).json()["auth"] is True
        # a link with the token sets a cookie and drops the token from the address
        opened = other.get("/", params={"token": token}, follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        cookie = opened.headers["set-cookie"]
        assert f"{TOKEN_COOKIE}={token}" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        other.cookies.set(TOKEN_COOKIE, token)
        assert other.get("/api/images/3/thumbnail").status_code == 200
        assert other.get("/").status_code == 200


@pytest.fixture(scope="module")
def read_only_session(index_dir, tmp_path_factory) -> tuple[dict, dict]:
    """The file tree of a fresh copy of the index before and after a session of requests."""
    copy = tmp_path_factory.mktemp("read-only") / "index"
    shutil.copytree(index_dir, copy)
    before = tree(copy)
    app = create_app(copy, thumbnail_dir=tmp_path_factory.mktemp("thumbnails-read-only"))
    with TestClient(app, base_url=BASE) as session:
        assert upload(session, ukbench(2), top=3).status_code == 200
        assert session.get("/api/search/5").status_code == 200
        assert session.get("/api/images", params={"limit": 100}).status_code == 200
        for image_id in (0, 9, 27):
            assert session.get(f"/api/images/{image_id}/thumbnail").status_code == 200
            assert session.get(f"/api/images/{image_id}/file").status_code == 200
        assert session.post("/api/images", files={"files": ("x.jpg", b"x")}).status_code == 403
        assert session.delete("/api/images/1").status_code == 403
    return before, tree(copy)


def test_the_index_directory_is_never_written_by_a_read_only_session(read_only_session):
    before, after = read_only_session
    assert after == before


# ---------------------------------------------------------------- writing


def test_a_writable_server_adds_uploads_and_removes_by_id(writable):
    photo = ukbench(30)  # object 7, not in the index
    files = [
        ("files", ("../../evil name.jpg", photo.read_bytes(), "text/plain")),
        ("files", ("again.jpg", ukbench(4).read_bytes(), "image/jpeg")),
    ]
    report = writable.post("/api/images", files=files).json()
    assert report["images"] == N_IMAGES + 1 and len(report["added"]) == 1
    added = report["added"][0]
    assert added["path"].startswith("uploads/") and added["path"].endswith("-evil_name.jpg")
    assert added["path"].count("/") == 1
    assert report["duplicates"] == [{"name": "again.jpg", "of": "ukbench00004.jpg"}], report
    found = upload(writable, ukbench(31), top=3).json()["results"]
    assert found[0]["id"] == added["id"] or added["id"] in [row["id"] for row in found]
    assert writable.get(f"/api/images/{added['id']}/thumbnail").status_code == 200
    bad = writable.post("/api/images", files={"files": ("x.jpg", b"not an image", "image/jpeg")})
    refused(bad, 415, "x.jpg")

    def grouped() -> list[list[int]]:
        groups = writable.get("/api/duplicates").json()["groups"]
        return sorted([item["id"] for item in group] for group in groups)

    before = grouped()
    half = io.BytesIO()  # a half-size, re-encoded copy of a photo of the index
    with Image.open(ukbench(12)) as photo:
        photo.resize((160, 120)).save(half, "JPEG", quality=80)
    copy = writable.post("/api/images", files={"files": ("copy.jpg", half.getvalue())}).json()
    copy_id = copy["added"][0]["id"]
    assert grouped() == sorted([*before, [12, copy_id]])
    assert writable.delete(f"/api/images/{copy_id}").status_code == 200
    removed = writable.delete(f"/api/images/{added['id']}").json()
    assert removed == {"removed": added["id"], "images": N_IMAGES}
    refused(writable.get(f"/api/images/{added['id']}"), 404)
    refused(writable.delete(f"/api/images/{added['id']}"), 404)
    assert added["id"] not in [row["id"] for row in upload(writable, ukbench(31)).json()["results"]]


def test_an_add_while_another_process_writes_is_a_409(writable):
    from imagelearn.retrieval.storage import WriteLock

    files = {"files": ("new.jpg", ukbench(33).read_bytes(), "image/jpeg")}
    with WriteLock(writable.app.state.settings.index_dir):  # as `imagelearn index add` holds it
        refused(writable.post("/api/images", files=files), 409, "another process is writing")
    assert writable.get("/api/info").json()["images"] == N_IMAGES


# ---------------------------------------------------------------- the binding rule


def test_a_token_is_made_beyond_the_loopback_unless_auth_is_off():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert (
        is_loopback("127.3.0.1") and not is_loopback("0.0.0.0") and not is_loopback("example.org")
    )
    assert access_token("127.0.0.1") is None
    made = access_token("0.0.0.0")
    assert made is not None and len(made) >= 40 and made != access_token("0.0.0.0")
    assert access_token("0.0.0.0", no_auth=True) is None
    assert access_token("192.0.2.1", token="given") == "given"
    assert page_url("0.0.0.0", 8000, "a b") == "http://127.0.0.1:8000/?token=a%20b"
    assert page_url("::1", 8001, None) == "http://[::1]:8001/"


def test_a_port_in_use_is_a_parameter_error():
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ParameterError, match=r"cannot serve on 127\.0\.0\.1") as caught:
            bind("127.0.0.1", taken.getsockname()[1])
        assert caught.value.parameter == "port"
    finally:
        taken.close()


def test_the_cli_imports_the_web_stack_only_to_serve():
    code = (
        "import sys; from imagelearn.cli.main import build_parser; import imagelearn.web; "
        "build_parser().parse_args(['serve', 'x']); "
        "print(sorted({'fastapi', 'uvicorn', 'starlette'} & set(sys.modules)))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert completed.stdout.strip() == "[]"


def test_stored_upload_names_are_chosen_by_the_app():
    pixels = np.zeros((2, 2, 3), np.uint8)
    for name, expected in (
        ("../../etc/passwd", "0123456789ab-passwd.png"),
        (".hidden.jpg", "0123456789ab-hidden.png"),
        ("日本.jpg", "0123456789ab-image.png"),
        ("a b;rm -rf.JPG", "0123456789ab-a_b_rm_-rf.png"),
    ):
        assert safe_file_name(Upload(name, "PNG", pixels, b""), "0123456789abcdef" * 4) == expected
