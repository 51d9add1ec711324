"""Model review (``imagelearn serve --review``): the REST API with FastAPI's test client on tiny
real runs of every kind (bof train, classify train, transfer compare, cluster fit on 30 flowers5
photos), and its refusals: a directory that is not a run, unknown cells, classes, clusters and
images, names that lead out of the runs served."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient
from PIL import Image

from conftest import data_path
from imagelearn.core.bundle import BundleError
from imagelearn.web import create_app
from imagelearn.web.review import read_run

BASE = "http://127.0.0.1"
CLASSES = ("daisy", "sunflower", "tulip")
#: BoF words of the tiny run (seconds to fit); the classify settings of test_classify_runs.py.
TINY_CHANNELS = [
    {"detector": "dense_rootsift", "detector_params": {"step": 16}, "n_words": 16},
    {"detector": "dense_lab", "detector_params": {"step": 16}, "n_words": 8, "pyramid": (1,)},
]
SMALL_CNN = dict(backbone="small_cnn", mode="scratch", image_size=32, batch_size=8, cache_dir="")


def _sample(folder: Path) -> Path:
    """A CSV of the first 10 flowers5 photos of each of :data:`CLASSES`."""
    path = folder / "flowers.csv"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["path", "label"])
            for name in CLASSES:
                for image in sorted(data_path("flowers5", name).glob("*.jpg"))[:10]:
                    writer.writerow([str(image), name])
    return path


def review_run(tmp_path_factory, kind: str) -> Path:
    """A tiny real run of ``kind`` (bof, classify, transfer, cluster) in the session's runs
    folder (``runs/KIND``), made once per session (the browser tests use them too)."""
    base = tmp_path_factory.getbasetemp() / "review"
    out = base / "runs" / kind
    if out.is_dir():
        return out
    sample = _sample(base)
    if kind == "bof":
        from imagelearn.bof.recognition import BofClassifier
        from imagelearn.bof.runs import train_run

        model = BofClassifier(channels=TINY_CHANNELS, n_jobs=1, cache_dir=False)
        train_run(sample, out, model, test_size=0.4, random_state=0)
    elif kind == "classify":
        from imagelearn.classify import DeepImageClassifier
        from imagelearn.classify.runs import train_run

        train_run(sample, out, DeepImageClassifier(**SMALL_CNN, epochs=2), test_size=0.4)
    elif kind == "transfer":
        from imagelearn.classify.runs import compare_transfer

        compare_transfer(
            sample, fractions=(0.5, 1.0), modes=("scratch",), epochs=3, out=out,
            **{k: v for k, v in SMALL_CNN.items() if k not in ("mode", "batch_size")},
        )  # fmt: skip
    else:
        from imagelearn.cluster.algorithms import ImageClusterer
        from imagelearn.cluster.runs import fit_run

        clusterer = ImageClusterer(n_clusters=3, pca_components=None)
        fit_run(sample, out, descriptor="color", clusterer=clusterer, evaluate=True, n_jobs=1)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The runs folder holding one run of every kind."""
    for kind in ("bof", "classify", "transfer", "cluster"):
        folder = review_run(tmp_path_factory, kind).parent
    return folder


@pytest.fixture(scope="module")
def client(runs, tmp_path_factory):
    app = create_app(None, review=[runs], thumbnail_dir=tmp_path_factory.mktemp("thumbnails"))
    with TestClient(app, base_url=BASE) as client:
        yield client


def get(client, route: str, **params):
    return client.get(f"/api/review/{route}", params=params)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_the_runs_folder_lists_every_run_by_name_and_kind(client):
    assert get(client, "runs").json()["runs"] == [
        {"name": "runs/bof", "kind": "bof"},
        {"name": "runs/classify", "kind": "classify"},
        {"name": "runs/cluster", "kind": "cluster"},
        {"name": "runs/transfer", "kind": "transfer"},
    ]
    info = client.get("/api/info")  # a server of runs only has no search pages
    assert info.status_code == 404 and "--review" in info.json()["detail"]


@pytest.mark.parametrize("kind", ["bof", "classify"])
def test_a_classifier_run_shows_its_metrics_matrix_and_mistakes_as_written(client, runs, kind):
    metrics = json.loads((runs / kind / "metrics.json").read_text())
    data = get(client, "run", run=f"runs/{kind}").json()
    assert data["kind"] == kind
    assert data["figures"]["accuracy"] == metrics["accuracy"]
    assert data["confusion"] == {
        "labels": list(CLASSES),
        "matrix": metrics["confusion_matrix"],
        "listable": "all",
    }
    wrong = rows(runs / kind / "misclassified.csv")
    assert [(item["name"], item["true"], item["predicted"]) for item in data["misclassified"]] == [
        (Path(row["path"]).name, row["true"], row["predicted"]) for row in wrong
    ]
    score_name = {"bof": "margin", "classify": "probability"}[kind]
    assert data["score_name"] == score_name
    for item in data["misclassified"]:  # the top class is the prediction, scores fall
        assert item["top"][0]["label"] == item["predicted"] and len(item["top"]) == 3
        scores = [top["score"] for top in item["top"]]
        assert scores == sorted(scores, reverse=True)
    assert (data["history"] is None) == (kind == "bof")


def test_every_cell_lists_exactly_the_images_of_its_pair_of_classes(client, runs):
    data = get(client, "run", run="runs/bof").json()
    predictions = rows(runs / "bof" / "predictions.csv")
    for i, true in enumerate(CLASSES):
        for j, predicted in enumerate(CLASSES):
            cell = get(client, "cell", run="runs/bof", true=true, predicted=predicted).json()
            expected = [
                Path(row["path"]).name
                for row in predictions
                if (row["true"], row["predicted"]) == (true, predicted)
            ]
            assert [image["name"] for image in cell["images"]] == expected
            assert cell["count"] == data["confusion"]["matrix"][i][j] == len(expected)


def test_a_thumbnail_is_a_jpeg_of_the_image_the_run_lists(client, runs):
    cell = get(client, "cell", run="runs/bof", true="daisy", predicted="daisy").json()
    first = cell["images"][0]
    answer = get(client, "thumbnail", run="runs/bof", image=first["image"])
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    thumbnail = Image.open(io.BytesIO(answer.content))
    assert max(thumbnail.size) <= 256
    original = Image.open(data_path("flowers5", "daisy", first["name"]))
    ratio = original.width / original.height
    assert thumbnail.width / thumbnail.height == pytest.approx(ratio, rel=0.02)


def test_a_transfer_comparison_shows_every_arm_with_its_curve_per_epoch(client, runs):
    report = json.loads((runs / "transfer" / "transfer.json").read_text())
    data = get(client, "run", run="runs/transfer").json()
    assert data["kind"] == "transfer"
    assert [(arm["mode"], arm["n_train"], arm["curve"]) for arm in data["arms"]] == [
        (arm["mode"], arm["n_train"], arm["curve"]) for arm in report["arms"]
    ]
    assert all(len(arm["curve"]) == 3 for arm in data["arms"])


def test_a_clustering_shows_its_map_and_the_members_of_each_cluster(client, runs):
    table = rows(runs / "cluster" / "clusters.csv")
    data = get(client, "run", run="runs/cluster").json()
    assert data["figures"]["n_clusters"] == 3 and "purity" in data["figures"]
    assert sorted(data["map"]["cluster"]) == sorted(int(row["cluster"]) for row in table)
    assert data["map"]["x"] == [float(row["x"]) for row in table]
    for item in data["clusters"]:
        members = get(client, "cluster", run="runs/cluster", cluster=item["cluster"]).json()
        expected = sorted(
            (row for row in table if int(row["cluster"]) == item["cluster"]),
            key=lambda row: float(row["distance"]),
        )
        assert [image["name"] for image in members["images"]] == [
            Path(row["path"]).name for row in expected
        ]
        assert members["size"] == item["size"] == len(expected)


def test_a_run_written_before_predictions_csv_lists_only_its_mistakes(client, runs, tmp_path):
    old = runs / "old-bof"
    shutil.copytree(runs / "bof", old)
    (old / "predictions.csv").unlink()
    try:
        data = get(client, "run", run="runs/old-bof").json()
        assert data["confusion"]["listable"] == "off-diagonal"
        assert all(item["top"] == [] for item in data["misclassified"])
        refused = get(client, "cell", run="runs/old-bof", true="daisy", predicted="daisy")
        assert refused.status_code == 404 and "no predictions.csv" in refused.json()["detail"]
        wrong = data["misclassified"][0]
        cell = get(
            client, "cell", run="runs/old-bof", true=wrong["true"], predicted=wrong["predicted"]
        )
        assert wrong["name"] in [image["name"] for image in cell.json()["images"]]
    finally:
        shutil.rmtree(old)


@pytest.mark.parametrize(
    ("route", "params", "status", "message"),
    [
        ("run", {"run": "runs"}, 422, "runs: not a run directory: it holds no metrics.json"),
        ("run", {"run": "runs/nothing"}, 404, "no run directory 'runs/nothing'"),
        ("run", {"run": "elsewhere/bof"}, 404, "this server reviews runs"),
        ("run", {"run": "runs/../runs/bof"}, 403, "refused"),
        ("run", {"run": "runs/bof/../../etc"}, 403, "refused"),
        ("run", {"run": "/etc/passwd"}, 403, "refused"),
        ("run", {"run": "runs/.hidden"}, 403, "refused"),
        ("cell", {"run": "runs/bof", "true": "rose", "predicted": "daisy"}, 404, "no class 'rose'"),
        ("cell", {"run": "runs/cluster", "true": "a", "predicted": "b"}, 404, "no confusion"),
        ("cluster", {"run": "runs/cluster", "cluster": 7}, 404, "no cluster 7; it has [0, 1, 2]"),
        ("cluster", {"run": "runs/bof", "cluster": 0}, 404, "it has no clusters"),
        ("cluster", {"run": "runs/cluster", "cluster": "x"}, 422, "cluster"),
        ("thumbnail", {"run": "runs/bof", "image": 999}, 404, "no image 999; the run lists 12"),
        ("thumbnail", {"run": "runs/bof", "image": -1}, 422, "image"),
        ("run", {}, 422, "run"),
    ],
)
def test_bad_requests_are_clear_4xx_errors(client, runs, route, params, status, message):
    answer = get(client, route, **params)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert str(runs) not in answer.json()["detail"], "the server's paths stay on the server"


def test_a_link_out_of_the_runs_folder_is_refused(client, runs, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(runs / "bof", outside)
    (runs / "linked").symlink_to(outside, target_is_directory=True)
    try:
        answer = get(client, "run", run="runs/linked")
        assert answer.status_code == 403 and "leads out of runs" in answer.json()["detail"]
        assert {"name": "runs/linked", "kind": "bof"} not in get(client, "runs").json()["runs"]
    finally:
        (runs / "linked").unlink()


def test_only_images_a_run_lists_are_served_and_a_moved_one_is_a_404(client, runs, tmp_path):
    moved = runs / "moved-bof"
    shutil.copytree(runs / "bof", moved)
    table = rows(moved / "predictions.csv")
    table[0]["path"] = str(tmp_path / "gone.jpg")
    with (moved / "predictions.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    try:
        answer = get(client, "thumbnail", run="runs/moved-bof", image=0)
        assert answer.status_code == 404 and "gone.jpg" in answer.json()["detail"]
    finally:
        shutil.rmtree(moved)


def test_a_server_without_review_answers_404_and_a_folder_without_runs_is_refused(tmp_path):
    with pytest.raises(BundleError, match=r"not a run directory.*nor does any folder below it"):
        create_app(None, review=[tmp_path])
    with pytest.raises(BundleError, match="not a directory"):
        create_app(None, review=[tmp_path / "missing"])
    (tmp_path / "photo.jpg").write_bytes(b"")
    with pytest.raises(BundleError, match="not a run directory"):
        read_run(tmp_path)
    studio = tmp_path / "studio"
    studio.mkdir()
    shutil.copy(data_path("flowers5", "daisy", "100080576_f52e8ee070_n.jpg"), studio / "a.jpg")
    app = create_app(None, studio=studio, studio_out=tmp_path / "out")
    with TestClient(app, base_url=BASE) as client:
        answer = get(client, "runs")
        assert answer.status_code == 404 and "--review RUN_DIR" in answer.json()["detail"]


def test_serve_review_prints_the_url_of_the_review_page(runs, monkeypatch, capsys):
    import uvicorn

    from imagelearn.cli.main import main

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(self))
    assert main(["serve", "--review", str(runs / "bof"), "--port", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"serving {runs / 'bof'} at http://127.0.0.1:" in printed
    assert "/#/review" in printed and len(served) == 1
    assert served[0].config.app.state.review.runs() == [{"name": "bof", "kind": "bof"}]
    assert main(["serve", "--review", str(runs / "bof" / "missing"), "--port", "0"]) == 2
    assert "missing: not a directory" in capsys.readouterr().err


def test_an_evaluation_report_alone_is_reviewed_like_a_run(runs, tmp_path):
    """What ``bof evaluate`` / ``classify evaluate`` write (the shared writer, no model)."""
    import numpy as np

    from imagelearn.evaluation import write_evaluation

    table = rows(runs / "bof" / "predictions.csv")
    index = {name: i for i, name in enumerate(CLASSES)}
    truth, guess = (np.array([index[row[key]] for row in table]) for key in ("true", "predicted"))
    paths = [row["path"] for row in table]
    metrics = write_evaluation(tmp_path / "evaluation", paths, truth, guess, CLASSES)
    review = read_run(tmp_path / "evaluation")
    assert review.kind == "evaluation" and review.data["figures"]["accuracy"] == metrics["accuracy"]
    assert review.data["score_name"] is None and review.data["confusion"]["listable"] == "all"
    listed = [
        image["name"] for t in CLASSES for p in CLASSES for image in review.cell(t, p)["images"]
    ]
    assert sorted(listed) == sorted(Path(path).name for path in paths)


def test_a_run_with_a_corrupt_file_is_a_422_naming_it(client, runs):
    broken = runs / "broken"
    shutil.copytree(runs / "bof", broken)
    (broken / "metrics.json").write_text("{", encoding="utf-8")
    try:
        answer = get(client, "run", run="runs/broken")
        assert answer.status_code == 422
        assert answer.json()["detail"].startswith("runs/broken/metrics.json: not JSON")
    finally:
        shutil.rmtree(broken)
