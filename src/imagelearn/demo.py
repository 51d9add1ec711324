"""``make demo``: the main jobs of imagelearn on the real sample images the repository ships.

Run as ``python -m imagelearn.demo [--data DIR] [--out DIR]``. The default data is
``examples/flowers5_sample`` (120 flower photos, 5 classes; see its SOURCE.md).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPOSITORY / "examples" / "flowers5_sample"


def run_bof(data: Path, out: Path) -> None:
    """Train and evaluate a BoF classifier (gray RootSIFT words + Lab color words, chi2 SVM)."""
    from imagelearn.bof.recognition import DEFAULT_CHANNELS, BofClassifier
    from imagelearn.bof.runs import train_run

    start = time.perf_counter()
    gray, color = DEFAULT_CHANNELS
    # the default model with vocabularies sized for 85 training images
    model = BofClassifier(channels=[{**gray, "n_words": 300}, {**color, "n_words": 64}])
    result = train_run(data, out / "bof", model, test_size=0.3, random_state=0, overwrite=True)
    print(
        f"Bag of Features on {data.name}: held-out accuracy {result.accuracy:.3f} "
        f"({result.n_images} test images, {time.perf_counter() - start:.0f} s)"
    )
    print(
        f"  model and report: {result.out} (metrics.json, confusion_matrix.png, misclassified.csv)"
    )


def run_transfer(data: Path, out: Path) -> None:
    """Scratch vs ImageNet transfer (features, finetune) on the same split: start, slope, asymptote."""
    from imagelearn.classify.runs import compare_transfer

    start = time.perf_counter()
    report = compare_transfer(
        data, fractions=(0.25, 1.0), epochs=3, image_size=96, out=out / "transfer", overwrite=True
    )
    print(f"\nTransfer learning, measured on {data.name} ({time.perf_counter() - start:.0f} s):")
    print(report.table())
    print(f"  learning curves: {report.plot_path}; numbers: {report.json_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imagelearn.demo", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled image folder")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="where results go")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not arguments.data.is_dir():
        parser.error(f"{arguments.data}: no such folder")
    run_bof(arguments.data, arguments.out)
    run_transfer(arguments.data, arguments.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
