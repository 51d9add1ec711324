"""Rebuild ``examples/flowers5_sample`` from the shared flowers5 set (24 images per class, seeded).

Source: the "flowers recognition" photo set, downscaled to 128x128 (see ../shared/data/README.md).
Run: ``python examples/make_flowers_sample.py ../shared/data/flowers5``
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

PER_CLASS = 24
SEED = 0


def main(source: str) -> None:
    target = Path(__file__).parent / "flowers5_sample"
    rng = random.Random(SEED)
    for class_dir in sorted(p for p in Path(source).iterdir() if p.is_dir()):
        chosen = rng.sample(sorted(class_dir.glob("*.jpg")), PER_CLASS)
        (target / class_dir.name).mkdir(parents=True, exist_ok=True)
        for path in chosen:
            shutil.copyfile(path, target / class_dir.name / path.name)


if __name__ == "__main__":
    main(sys.argv[1])
