"""``classify train --mode finetune`` killed with SIGKILL in the middle of an epoch, then run again
with ``--resume``, ends exactly like the uninterrupted run: the checkpoint holds the weights,
the optimizer and scheduler states and the history, and every epoch reseeds its randomness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import imagelearn
from conftest import hymenoptera_csv
from imagelearn.classify import DeepImageClassifier
from imagelearn.cli.main import main

pytestmark = pytest.mark.usefixtures("single_torch_thread")

#: Seconds the child may take to reach its first finetune checkpoint.
CHECKPOINT_TIMEOUT = 300

#: Runs in a child process: ``classify train`` whose second epoch of phase argv[2] stops after its
#: first batch (the weights in memory are past the checkpoint) and waits there to be killed.
CHILD = """
import sys
from pathlib import Path
import torch
from imagelearn.classify.training import EpochLoop
from imagelearn.cli.main import main

torch.set_num_threads(1)
ready, phase = Path(sys.argv[1]), sys.argv[2]
original = EpochLoop._epoch

def epoch_that_hangs(self, epoch, random_state):
    if self.phase == phase and epoch == 1:
        batches = self.train_batches

        def first_batch_then_wait(epoch):
            iterator = iter(batches(epoch))
            yield next(iterator)
            ready.touch()
            sys.stdin.read()  # blocks until the parent kills this process

        self.train_batches = first_batch_then_wait
    return original(self, epoch, random_state)

EpochLoop._epoch = epoch_that_hangs
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """A CSV of 12 hymenoptera training photos per class (ants, bees)."""
    return hymenoptera_csv(tmp_path_factory.mktemp("sample"), 12)


def train_command(sample: Path, out: Path) -> list[str]:
    return [
        "classify", "train", str(sample), "--out", str(out), "--mode", "finetune",
        "--backbone", "small_cnn", "--weights", "none", "--image-size", "32",
        "--batch-size", "4", "--head-epochs", "2", "--epochs", "3", "--patience", "0",
        "--test-size", "0.25", "--cache-dir", "",
    ]  # fmt: skip


def wait_for(paths: list[Path], child: subprocess.Popen, timeout: float) -> None:
    """Poll until every path exists; fail if the child ends or the time runs out first."""
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        assert time.monotonic() < deadline, f"no {paths} after {timeout} s"
        try:  # wait on the child between looks at the files: it must not end first
            child.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the training ended (status {child.returncode}) too early")


@pytest.mark.parametrize(
    ("phase", "checkpoints"),
    [("head", ["checkpoint-head.pt"]), ("finetune", ["checkpoint-head.pt", "checkpoint.pt"])],
)
def test_a_finetune_run_killed_mid_epoch_resumes_to_the_same_model(
    sample, tmp_path, phase, checkpoints
) -> None:
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert main(train_command(sample, straight)) == 0
    ready = tmp_path / "mid-epoch"
    source = str(Path(imagelearn.__file__).parents[1])
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([source, *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ready), phase, *train_command(sample, run)],
        env=environment,
        stdin=subprocess.PIPE,
    )
    try:
        wait_for([*(run / name for name in checkpoints), ready], child, CHECKPOINT_TIMEOUT)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert not (run / "manifest.json").exists()  # killed: no model saved

    assert main([*train_command(sample, run), "--resume"]) == 0
    resumed, uninterrupted = DeepImageClassifier.load(run), DeepImageClassifier.load(straight)
    assert [row["epoch"] for row in resumed.history_] == [1, 2, 3, 4, 5]
    for name, tensor in uninterrupted.network_.state_dict().items():
        torch.testing.assert_close(resumed.network_.state_dict()[name], tensor, msg=name)
    timing = {"fit_seconds", "seconds"}
    for a, b in zip(resumed.history_, uninterrupted.history_, strict=True):
        assert {k: v for k, v in a.items() if k not in timing} == pytest.approx(
            {k: v for k, v in b.items() if k not in timing}, nan_ok=True
        )
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (run, straight)]
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"]
    assert not list(run.glob("checkpoint*"))  # the finished run keeps no checkpoints
