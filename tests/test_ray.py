"""The Ray engine on a local two-CPU Ray cluster: the same results as the local engine,
unreadable images reported the same way, a killed worker and a killed driver survived.

The cluster (one node, this machine: Ray gives it the machine's address even when asked for
127.0.0.1) is started once for the module and stopped at the end. It declares one GPU, which
this machine does not have: network work gets a GPU worker, which finds no CUDA device and runs
the network where the driver placed it (the scheduling is tested; the GPU itself cannot be). Workers import this module
(its functions run there), so its folder is on their ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import data_path
from imagelearn.cli.main import main
from imagelearn.core.execution import get_backend, map_images, use_engine
from imagelearn.features import make_detector
from imagelearn.features.extract import map_features
from imagelearn.retrieval import Index, IndexParams, build_index

ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parent
SRC = Path(__import__("imagelearn").__file__).resolve().parents[1]
#: Small: 8 x 8 x 8 words, UKBench's own 320 x 240 size.
PARAMS = IndexParams(
    max_keypoints=300,
    max_side=320,
    vocabulary_params={"branching": 8, "depth": 3, "n_iter": 4},
    train_images=40,
    train_descriptors_per_image=100,
)
#: The same as command-line options (the default 300 training descriptors, 10 iterations).
BUILD_OPTIONS = [
    "--max-keypoints=300",
    "--max-side=320",
    "--branching=8",
    "--depth=3",
    "--train-images=40",
    "--no-global-descriptor",
]


#: What the engine logs (at DEBUG) when a worker hands back a block of the sharded build (the
#: stage `retrieval/shards.py` describes as "indexing blocks"): that block's shard is written.
BLOCK_DONE = "ray: indexing blocks: block "


def within(seconds: float, work: Callable[[], object], what: str) -> object:
    """``work()`` (which blocks until its condition holds) run on a thread, joined for at most
    ``seconds``: its result, or the test fails naming ``what``."""
    outcome: dict[str, object] = {}
    waiter = threading.Thread(target=lambda: outcome.setdefault("value", work()), daemon=True)
    waiter.start()
    waiter.join(seconds)
    if "value" not in outcome:
        pytest.fail(f"timed out waiting for {what}")
    return outcome["value"]


class BlockDone(logging.Handler):
    """Sets :attr:`first` when the engine reports a block done in this process."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(BLOCK_DONE):
            self.first.set()


@pytest.fixture(scope="module")
def cluster():
    """A two-CPU Ray instance on this machine for this module; its GCS address."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(SRC), previous or ""])
    context = ray.init(
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        object_store_memory=256 * 2**20,
        logging_level=logging.ERROR,
        configure_logging=False,
    )
    try:
        yield context.address_info["gcs_address"]
    finally:
        get_backend("ray").close()
        ray.shutdown()
        if previous is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = previous


@pytest.fixture(scope="module")
def ukbench() -> list[str]:
    """40 UKBench photos (10 objects) and a corrupt JPEG."""
    photos = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:40]
    return [*photos, str(data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg"))]


def catalogue(index: Path) -> list[tuple]:
    with sqlite3.connect(index / "catalogue.sqlite") as connection:
        return connection.execute(
            "SELECT id, path, sha256, height, width, n_features FROM images ORDER BY id"
        ).fetchall()


def top10(index: Path, queries: list[str]) -> list[list[tuple[str, float]]]:
    opened = Index.open(index)
    return [
        [(m.path, round(m.score, 5)) for m in opened.search(query, top=10).matches]
        for query in queries
    ]


def test_features_and_unreadable_images_on_ray_are_those_of_the_local_engine(cluster):
    bad = sorted(str(p) for p in data_path("bad_inputs").rglob("*") if p.is_file())
    photos = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:8]
    images = [*photos, *bad, "/no/such/image.jpg"]
    detector = make_detector("rootsift", max_keypoints=200, max_side=320)
    local = map_features(images, detector, n_jobs=2, cache_dir=False, engine="local")
    remote = map_features(images, detector, n_jobs=-1, cache_dir=False, engine="ray")
    assert len(local.failures) >= 2  # the corrupt JPEG and the missing file at least
    assert remote.failures == local.failures
    assert remote.kept.tolist() == local.kept.tolist()
    for ours, theirs in zip(remote.values, local.values, strict=True):
        np.testing.assert_array_equal(ours.keypoints, theirs.keypoints)
        np.testing.assert_array_equal(ours.descriptors, theirs.descriptors)


def test_data_check_with_engine_ray_prints_the_local_report(cluster, capsys):
    folder = str(data_path("bad_inputs", "mixed_images"))
    reports = []
    for engine in ("local", "ray"):
        assert main(["data", "check", folder, "--format", "json", "--engine", engine]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[1] == reports[0]
    (report,) = reports[0].values()
    assert [Path(item["path"]).name for item in report["unreadable"]] == [
        "ukbench09268_corrupt.jpg"
    ]


def stall_once(marker: str, value: int) -> int:
    """``value`` squared; the first worker given 5 writes its pid into the named pipe
    ``marker`` and waits there to be killed (a retry finds ``marker.taken`` and goes on)."""
    if value == 5 and not os.path.exists(f"{marker}.taken"):
        Path(f"{marker}.taken").touch()
        with open(marker, "w") as fifo:  # the test reads the pid from this named pipe
            fifo.write(str(os.getpid()))
        threading.Event().wait(120)
        raise RuntimeError("this worker should have been killed")
    return value * value


def test_a_worker_killed_while_it_works_on_a_block_is_replaced_and_the_block_rerun(
    cluster, tmp_path, caplog
):
    marker = tmp_path / "pid"
    os.mkfifo(marker)
    outcome = {}

    def drive() -> None:
        outcome["result"] = map_images(
            partial(stall_once, str(marker)), list(range(12)), batch_size=1, engine="ray"
        )

    driver = threading.Thread(target=drive)
    with caplog.at_level(logging.WARNING, "imagelearn.core.ray_engine"):
        driver.start()
        pid = within(120, marker.read_text, "a worker to stall on its block")
        os.kill(int(pid), signal.SIGKILL)
        driver.join(120)
    assert not driver.is_alive()
    result = outcome["result"]
    assert result.values == [value * value for value in range(12)]
    assert result.kept.tolist() == list(range(12)) and not result.failures
    assert "a worker died on block 6 of 12" in caplog.text


def die_on(doomed: int, value: int) -> int:
    """``value``, except that ``doomed`` ends the worker's process."""
    if value == doomed:
        os._exit(1)
    return value


def test_a_block_whose_workers_keep_dying_fails_the_call_loudly(cluster, monkeypatch):
    from imagelearn.core import ray_engine

    monkeypatch.setattr(ray_engine, "BLOCK_ATTEMPTS", 2)
    with pytest.raises(ray_engine.WorkerLostError, match=r"block 4 of 4 .* lost its worker 2"):
        map_images(partial(die_on, 3), list(range(4)), batch_size=1, engine="ray")
    assert map_images(partial(die_on, -1), [1, 2], engine="ray").values == [1, 2]


def test_network_work_on_ray_also_runs_on_a_gpu_worker_and_matches_the_local_engine(
    cluster, caplog
):
    from imagelearn.classify.embeddings import embed

    images = [str(path) for path in data_path("hymenoptera", "train", "ants").glob("*.jpg")][:12]
    options = {"image_size": 96, "batch_size": 2, "cache_dir": "", "backend": "torch"}
    local = embed(images, **options)
    with caplog.at_level(logging.DEBUG, "imagelearn.core.ray_engine"), use_engine("ray"):
        remote = embed(images, **options)
    # float32 sums split over other threads and batches: equal to a few units in the 6th digit
    np.testing.assert_allclose(remote, local, rtol=1e-5, atol=1e-5)
    # one GPU worker, given the declared GPU; no CUDA here, so it ran on the driver's device
    assert get_backend("ray").gpu_worker_devices() == [(["0"], None)]
    on_gpu = [r for r in caplog.messages if r.endswith("done on a GPU worker")]
    assert 1 <= len(on_gpu) < 6  # of the 6 blocks, the CPU workers ran the others
    assert any("(1 with a GPU)" in message for message in caplog.messages)


@pytest.fixture(scope="module")
def local_index(tmp_path_factory, ukbench) -> Path:
    """The reference: the collection indexed by the command line on the local engine."""
    index = tmp_path_factory.mktemp("local") / "index"
    assert main(["index", "build", *ukbench, "--out", str(index), *BUILD_OPTIONS]) == 0
    return index


def test_index_build_on_ray_gives_the_local_catalogue_and_results(
    cluster, local_index, ukbench, tmp_path, capsys
):
    index = tmp_path / "index"
    capsys.readouterr()
    command = ["index", "build", *ukbench, "--out", str(index), *BUILD_OPTIONS]
    assert main([*command, "--engine", "ray", "--address", cluster]) == 0
    printed = capsys.readouterr().out
    assert "added: 40" in printed and "skipped: " in printed and "corrupt" in printed
    assert len(catalogue(local_index)) == 40
    assert catalogue(index) == catalogue(local_index)
    vocabularies = [load_file(str(i / "vocabulary.safetensors")) for i in (index, local_index)]
    assert vocabularies[0].keys() == vocabularies[1].keys()  # trained on the sample gathered
    for name, array in vocabularies[0].items():  # by the workers: the local words and idf
        np.testing.assert_array_equal(array, vocabularies[1][name])
    assert top10(index, ukbench[:40]) == top10(local_index, ukbench[:40])
    assert not (index / "shards").exists()


def test_a_worker_killed_mid_build_leaves_every_image_indexed_once(
    cluster, local_index, ukbench, tmp_path, caplog
):
    index = tmp_path / "index"
    shards = index / "shards"
    backend = get_backend("ray")
    outcome = {}

    def drive() -> None:
        with use_engine("ray"):
            outcome["report"] = build_index(ukbench, index, PARAMS, cache_dir=False)

    driver = threading.Thread(target=drive)
    engine_log, block_done = logging.getLogger("imagelearn.core.ray_engine"), BlockDone()
    engine_log.addHandler(block_done)
    try:
        with caplog.at_level(logging.DEBUG, "imagelearn.core.ray_engine"):
            driver.start()
            if not block_done.first.wait(120):
                pytest.fail("timed out waiting for a first block (its shard written)")
            assert any(shards.glob("*.safetensors"))
            os.kill(backend.worker_pids()[0], signal.SIGKILL)
            driver.join(180)
    finally:
        engine_log.removeHandler(block_done)
    assert not driver.is_alive()
    assert "a worker died on block" in caplog.text
    rows = catalogue(index)
    assert len(rows) == 40 and len({row[2] for row in rows}) == 40
    assert [row[1:3] for row in rows] == [row[1:3] for row in catalogue(local_index)]
    assert len(outcome["report"].added) == 40


DRIVER = """
import logging, sys, ray
logging.basicConfig(level=logging.WARNING, format="%(message)s")
logging.getLogger("imagelearn.core.ray_engine").setLevel(logging.DEBUG)  # blocks done, on stderr
from imagelearn.core.execution import use_engine
from imagelearn.retrieval import build_index
from test_ray import PARAMS
ray.init(address=sys.argv[1], logging_level="ERROR", configure_logging=False)
with use_engine("ray"):
    build_index(sys.argv[3:], sys.argv[2], PARAMS, cache_dir=False)
"""


def test_a_driver_killed_mid_build_resumes_from_the_shards_written(
    cluster, local_index, ukbench, tmp_path, caplog
):
    index = tmp_path / "index"
    shards = index / "shards"
    get_backend("ray").close()  # the CPUs go to the other driver's workers
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, cluster, str(index), *ukbench],
        env={**os.environ, "IMAGELEARN_QUIET": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def two_blocks_done() -> list[bytes]:
        lines = []  # until two blocks are done (or the driver ends: its stderr closes)
        while sum(line.startswith(BLOCK_DONE.encode()) for line in lines) < 2:
            line = driver.stderr.readline()
            if not line:
                break
            lines.append(line)
        return lines

    try:
        lines = within(180, two_blocks_done, "the first shards of the driver to kill")
    finally:
        driver.kill()
        _, rest = driver.communicate(timeout=60)
    errors = b"".join(lines) + rest
    written = {path.name for path in shards.glob("*.safetensors")}
    assert written, errors.decode()[-2000:]
    with caplog.at_level(logging.INFO, "imagelearn.retrieval.shards"), use_engine("ray"):
        report = build_index(ukbench, index, PARAMS, cache_dir=False)
    reused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reused")]
    assert reused and int(reused[0].split()[1]) >= len(written)
    assert len(report.added) == 40
    assert [row[1:3] for row in catalogue(index)] == [row[1:3] for row in catalogue(local_index)]
    assert not shards.exists()


def test_cluster_check_reports_the_cpus_and_what_workers_cannot_reach(
    cluster, ukbench, tmp_path, capsys
):
    missing = str(tmp_path / "missing.jpg")
    out = tmp_path / "out"
    command = ["cluster-check", "--address", cluster, *ukbench[:3], missing, "--out", str(out)]
    assert main([*command, "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["cpus"] == 2 and report["nodes"] == 1 and report["paths_checked"] == 4
    (node,) = report["checks"]
    assert [path for path, _ in node["unreadable"]] == [missing]
    assert node["output_problem"] == "" and out.is_dir() and not any(out.iterdir())
    assert main(["cluster-check", "--address", cluster, *ukbench[:3]]) == 0
    assert "read 3 of 3 image paths" in capsys.readouterr().out
