"""``transfer compare``: learning-curve summaries and a small real comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from imagelearn.classify.transfer import nested_subsets, summarize_curve
from imagelearn.cli.main import main
from imagelearn.data import ImageDataset

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_curve_summary() -> None:
    summary = summarize_curve([0.5, 0.7, 0.9, 0.8])
    assert summary == {
        "start": 0.5,
        "slope": pytest.approx(0.725),
        "epochs_to_90": 3,
        "asymptote": 0.9,
    }
    with pytest.raises(ValueError):
        summarize_curve([])


def test_nested_subsets_are_stratified_and_nested() -> None:
    dataset = ImageDataset(
        [Path(f"{i}.jpg") for i in range(30)], np.repeat([0, 1, 2], 10), ["a", "b", "c"]
    )
    subsets = nested_subsets(dataset, [0.05, 0.5, 1.0], random_state=0)
    assert [len(subsets[f]) for f in (0.05, 0.5, 1.0)] == [3, 15, 30]
    assert set(subsets[0.05].paths) <= set(subsets[0.5].paths) <= set(subsets[1.0].paths)
    assert np.bincount(subsets[0.5].labels).tolist() == [5, 5, 5]


def test_compare_on_a_small_real_sample(tmp_path: Path, capsys) -> None:
    root = data_path("flowers5")
    rows = ["path,label"]
    for label in ("daisy", "sunflower"):
        rows += [f"{path},{label}" for path in sorted((root / label).glob("*.jpg"))[:14]]
    (tmp_path / "sample.csv").write_text("\n".join(rows) + "\n")
    arguments = [
        "transfer",
        "compare",
        str(tmp_path / "sample.csv"),
        "--out",
        str(tmp_path / "out"),
        "--fractions",
        "0.5,1",
    ]
    arguments += ["--epochs", "2", "--image-size", "64", "--cache-dir", str(tmp_path / "cache")]
    assert main(arguments) == 0
    report = json.loads((tmp_path / "out" / "transfer.json").read_text())
    arms = {(arm["mode"], arm["fraction"]): arm for arm in report["arms"]}
    assert set(arms) == {
        (mode, fraction) for mode in ("scratch", "finetune", "features") for fraction in (0.5, 1.0)
    }
    for arm in arms.values():
        assert len(arm["curve"]) == 2 and 0.0 <= arm["start"] <= arm["asymptote"] <= 1.0
    assert arms[("features", 1.0)]["n_train"] == 20 and report["n_held_out"] == 8
    assert (tmp_path / "out" / "transfer.png").stat().st_size > 10_000
    assert "| finetune | 20 |" in capsys.readouterr().out
