"""Object recognition with BoF + SVM on whole real data sets (the figures the README quotes).

Run: ``python -m bench.run_all recognition``. On flowers5 (seeded stratified 70/30 split) it
trains the grey-only configuration of the reference throwaway script (dense multi-scale
RootSIFT, 1,000 words, 2-level pyramid, chi2 map, linear SVM: 0.52 there) beside imagelearn's
default two-channel model (grey RootSIFT + Lab colour words: the reference scored 0.67 with
64 Lab words); on hymenoptera (given train/val split) the default model. Writes
``bench/results/recognition.json``.

Accuracy is deterministic and computed once. Each training takes minutes, so its time is one
run by default; ``$BENCH_RECOGNITION_REPEATS`` runs that many interleaved rounds of the three
trainings (median (min-max) of the minutes). ``$BENCH_RECOGNITION_IMAGES`` trains and tests on
that many images per class only (a seeded 70/30 split of them: a quick check, not the figures).
"""

from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path

from bench import data_root
from bench.common import (
    Directories,
    describe_machine,
    format_rounds,
    machine,
    merge_rounds,
    rounds,
    setting,
    spread,
    timed,
    write_results,
)
from imagelearn.bof.recognition import DEFAULT_CHANNELS, BofClassifier
from imagelearn.bof.runs import train_run
from imagelearn.data.collection import find_images

RESULTS = Path(__file__).resolve().parent / "results" / "recognition.json"
DATA = data_root()
REFERENCE = {
    "grey dense RootSIFT (reference script)": 0.52,
    "grey + 64 Lab colour words (reference script)": 0.67,
}
#: Training time is one run unless ``$BENCH_RECOGNITION_REPEATS`` says otherwise (minutes each).
REPEATS = 1
GREY_ONLY = [{**DEFAULT_CHANNELS[0], "n_words": 1000}]  # the reference script's size
#: (data set, model name, channels, reference accuracy) per row of the table.
ROWS = (
    ("flowers5", "grey dense RootSIFT, 1,000 words", GREY_ONLY, 0.52),
    ("flowers5", "default: grey + Lab colour words", list(DEFAULT_CHANNELS), 0.67),
    ("hymenoptera", "default: grey + Lab colour words", list(DEFAULT_CHANNELS), None),
)


def run(name: str, data: Path, channels: list[dict], outputs: Directories) -> dict:
    """Train and evaluate one model on ``data`` (a fresh output directory each call)."""
    seconds, result = timed(
        partial(
            train_run,
            data,
            outputs.fresh(),
            BofClassifier(channels=channels),
            test_size=0.3,
            random_state=0,
        )
    )
    metrics = result.metrics
    return {
        "data": Path(data).stem,
        "model": name,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "n_train": metrics["n_train"],
        "n_test": metrics["n_images"],
        "seconds": seconds,
    }


def sample_collection(source: Path, per_class: int, out: Path) -> Path:
    """A ``path,label`` CSV of the first ``per_class`` images of each class folder of ``source``."""
    by_class: dict[str, list[Path]] = {}
    for path in find_images(source):
        by_class.setdefault(Path(path).parent.name, []).append(Path(path))
    rows = ["path,label"]
    for label, paths in sorted(by_class.items()):
        rows += [f"{path},{label}" for path in paths[:per_class]]
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def main() -> str:
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    info = machine()
    repeats = setting("BENCH_RECOGNITION_REPEATS", REPEATS)
    per_class = setting("BENCH_RECOGNITION_IMAGES", 0)
    with tempfile.TemporaryDirectory() as scratch:
        outputs = Directories(Path(scratch) / "runs")
        sources = {
            name: sample_collection(DATA / name, per_class, Path(scratch) / f"{name}.csv")
            if per_class
            else DATA / name
            for name in {data for data, *_ in ROWS}
        }
        measured = rounds(
            {
                f"{data}/{model}": partial(run, model, sources[data], channels, outputs)
                for data, model, channels, _ in ROWS
            },
            repeats,
        )
    rows = [merge_rounds(runs, ["seconds"]) for runs in measured.values()]
    record = write_results(
        RESULTS,
        {
            "rows": rows,
            "reference": REFERENCE,
            "channels": DEFAULT_CHANNELS,
            "repeats": repeats,
            "images_per_class": per_class or "all",
        },
        info,
    )
    return markdown(record)


def markdown(record: dict) -> str:
    """The README section of :func:`main`'s results."""
    repeats, rows = record["repeats"], record["rows"]
    minutes = "minutes" if repeats == 1 else f"minutes, median (min-max) of {repeats} rounds"
    lines = [
        "## Object recognition with BoF + SVM (`bench_recognition`)",
        "",
        f"{describe_machine(record['machine'])}. Accuracy on the held-out images (deterministic); "
        + (
            "training time of one run (minutes each; `BENCH_RECOGNITION_REPEATS` repeats it)."
            if repeats == 1
            else f"training time over {repeats} interleaved rounds."
        ),
        "",
        f"| data | model | accuracy | reference | train / test images | {minutes} |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row, (*_, reference) in zip(rows, ROWS, strict=True):
        in_minutes = spread(value / 60 for value in row["seconds"]["values"])
        lines.append(
            f"| {row['data']} | {row['model']} | {row['accuracy']:.3f} | {reference or '-'} | "
            f"{row['n_train']} / {row['n_test']} | {format_rounds(in_minutes, digits=1)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
