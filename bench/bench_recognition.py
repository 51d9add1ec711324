"""Object recognition with BoF + SVM on whole real data sets (the figures the README quotes).

Run: ``python -m bench.run_all recognition``. On flowers5 (seeded stratified 70/30 split) it
trains the grey-only configuration of the reference throwaway script (dense multi-scale
RootSIFT, 1,000 words, 2-level pyramid, chi2 map, linear SVM: 0.52 there) beside imagelearn's
default two-channel model (grey RootSIFT + Lab colour words: the reference scored 0.67 with
64 Lab words); on hymenoptera (given train/val split) the default model. Writes
``bench/results/recognition.json``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench import data_root
from imagelearn.bof.recognition import DEFAULT_CHANNELS, BofClassifier
from imagelearn.bof.runs import train_run
from imagelearn.core.bundle import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "recognition.json"
DATA = data_root()
REFERENCE = {
    "grey dense RootSIFT (reference script)": 0.52,
    "grey + 64 Lab colour words (reference script)": 0.67,
}


def run(name: str, data: Path, channels: list[dict], scratch: Path) -> dict:
    start = time.perf_counter()
    metrics = train_run(
        data,
        scratch / name.replace(" ", "_"),
        BofClassifier(channels=channels),
        test_size=0.3,
        random_state=0,
    ).metrics
    return {
        "data": data.name,
        "model": name,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "n_train": metrics["n_train"],
        "n_test": metrics["n_images"],
        "seconds": time.perf_counter() - start,
    }


def main() -> str:
    os.environ.setdefault("IMAGELEARN_QUIET", "1")
    grey_only = [{**DEFAULT_CHANNELS[0], "n_words": 1000}]  # the reference script's size
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        rows.append(
            run("grey dense RootSIFT, 1,000 words", DATA / "flowers5", grey_only, Path(scratch))
        )
        rows.append(
            run(
                "default: grey + Lab colour words",
                DATA / "flowers5",
                list(DEFAULT_CHANNELS),
                Path(scratch),
            )
        )
        rows.append(
            run(
                "default: grey + Lab colour words",
                DATA / "hymenoptera",
                list(DEFAULT_CHANNELS),
                Path(scratch),
            )
        )
    atomic_write_json(
        RESULTS,
        {
            "rows": rows,
            "reference": REFERENCE,
            "channels": DEFAULT_CHANNELS,
            "load_average": os.getloadavg(),
        },
    )
    lines = [
        "## Object recognition with BoF + SVM (`bench_recognition`)",
        "",
        "| data | model | accuracy | reference | train / test images | minutes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    references = [
        REFERENCE["grey dense RootSIFT (reference script)"],
        REFERENCE["grey + 64 Lab colour words (reference script)"],
        None,
    ]
    for row, reference in zip(rows, references, strict=True):
        lines.append(
            f"| {row['data']} | {row['model']} | {row['accuracy']:.3f} | {reference if reference else '-'} | "
            f"{row['n_train']} / {row['n_test']} | {row['seconds'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
