"""``make demo``: the main jobs of imagelearn on the real sample images the repository ships.

Run as ``python -m imagelearn.demo [--data DIR] [--out DIR]``. The default data is
``examples/flowers5_sample`` (120 flower photos, 5 classes; see its SOURCE.md). The demo
trains a Bag-of-Features classifier, measures transfer learning, and builds the demo index:
the sample plus, when ``$IMAGELEARN_DATA/ukbench`` exists (default ``../shared/data``), the
first :data:`UKBENCH_OBJECTS` UKBench objects (4 views each), with tags and the 2-D map. It
ends by printing the command that opens the web app on that index.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPOSITORY / "examples" / "flowers5_sample"
#: UKBench objects (4 photos each) added to the demo index.
UKBENCH_OBJECTS = 25
#: Epochs and input side (pixels) of every transfer arm. Measured on the sample (85 training
#: images, 2 shared cores): at 3 epochs ``scratch`` had not left chance (0.20); at 8 epochs,
#: 96 px it climbs 0.29 -> 0.46 while ``finetune`` (0.60 -> 0.63) and ``features`` (0.71) start
#: and end higher; the transfer step took 179-184 s at load 5-13 (12 epochs at 64 px: scratch
#: ends at 0.34; 10 at 80 px: 0.43). On an Intel Xeon at load 1, the same seeds gave scratch
#: 0.37 -> 0.40 in 32 s (float sums differ with the CPU; 35 held-out images, 0.03 each).
TRANSFER_EPOCHS = 8
TRANSFER_IMAGE_SIZE = 96


def ukbench_photos() -> list[Path]:
    """The photos of the first :data:`UKBENCH_OBJECTS` UKBench objects, when the shared data is
    there (``$IMAGELEARN_DATA``, default ``../shared/data`` beside the repository)."""
    root = Path(os.environ.get("IMAGELEARN_DATA") or REPOSITORY.parent / "shared" / "data")
    return sorted((root / "ukbench").glob("ukbench*.jpg"))[: 4 * UKBENCH_OBJECTS]


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
        data,
        fractions=(0.25, 1.0),
        epochs=TRANSFER_EPOCHS,
        image_size=TRANSFER_IMAGE_SIZE,
        out=out / "transfer",
        overwrite=True,
    )
    print(f"\nTransfer learning, measured on {data.name} ({time.perf_counter() - start:.0f} s):")
    print(report.table())
    print(f"  learning curves: {report.plot_path}; numbers: {report.json_path}")


def run_index(data: Path, out: Path, model: Path) -> Path:
    """Index the sample (and UKBench objects) for search by photo and by keyword: RootSIFT
    with a 10^4-word tree, GeM descriptors, ImageNet tags, the 2-D map; then the tags of the
    classifier ``model``, computed once into the cache, so that the web app starts at once."""
    from imagelearn.retrieval.index import Index
    from imagelearn.retrieval.runs import build_run
    from imagelearn.retrieval.tags import classifier_tags

    start = time.perf_counter()
    ukbench = ukbench_photos()
    result = build_run([data, *ukbench], out / "index", branching=10, depth=4, overwrite=True)
    index = Index.open(result.index)
    tagged = sum(1 for tags in index.tag_table().of(index.ids().tolist()).values() if tags)
    print(
        f"\nDemo index of {index.n_images} images ({data.name}"
        f"{f' and {len(ukbench) // 4} UKBench objects x 4 views' if ukbench else ''}; "
        f"{tagged} tagged, on the map; {time.perf_counter() - start:.0f} s): {result.index}"
    )
    top = ", ".join(
        f"{name} ({count})" for name, count in list(index.tag_table().counts().items())[:5]
    )
    print(f"  most frequent ImageNet tags: {top}")
    start = time.perf_counter()
    tags = classifier_tags(index, model)
    top = ", ".join(f"{name} ({count})" for name, count in list(tags.counts().items())[:5])
    print(f"  tags of the classifier {model} ({time.perf_counter() - start:.0f} s): {top}")
    return result.index


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
    index = run_index(arguments.data, arguments.out, arguments.out / "bof")
    print(
        "\nOpen the web app on it (search the index; review the BoF model, its visual words and"
        f" the transfer curves):\n  imagelearn serve {index} --model {arguments.out / 'bof'}"
        f" --review {arguments.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
