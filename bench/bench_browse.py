"""What browsing an index costs and how its near-duplicate rule was chosen: tags, map, copies.

Run: ``python -m bench.run_all browse`` (or ``python -m bench.bench_browse``). Writes
``bench/results/browse.json`` and returns a Markdown section. ``BENCH_BROWSE_REPEATS``
interleaved rounds (default 3), nothing cached:

* **tags**: the network pass of the global descriptor alone (``GeMDescriptor.transform``)
  against the same pass with the ImageNet classes (``describe_with_classes``), on 100 UKBench
  photos (one pass) and 40 flower thumbnails (a second pass at 224 pixels), and whole builds
  of 100 UKBench photos with and without tags;
* **map**: :func:`~imagelearn.retrieval.image_map.compute_map` of the UKBench index (500
  images), and of 10,000 and 50,000 descriptors made from its 500 (each copied with noise;
  50,000 is beyond the t-SNE limit: a sample of 10,000 laid out, the rest placed);
* **tag search at scale**: a catalogue's tag tables of ``BENCH_TAG_IMAGES`` images (default
  1,000,000) x 5 ImageNet tags, generated (classes drawn with Zipf-like popularity, random
  scores): searches of a common word, a rare one and one letter, with and without ``among``,
  ``of`` and ``counts``;
* **near duplicates**: an index of UKBench's 500 photos and 8 kinds of copies of 40 of them;
  for views of one object and for each kind of copy, the whitened GeM cosine, the inlier
  fraction and the homography's departure from a change of scale and position, then what
  :meth:`Index.duplicate_groups` finds and its time.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import data_root
from bench.common import (
    describe_machine,
    finish_machine,
    format_spread,
    interleaved,
    machine,
    ratio_spread,
    setting,
    spread,
    timed,
)
from imagelearn.core.bundle import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "browse.json"
REPEATS = setting("BENCH_BROWSE_REPEATS", 3)
N_TAG_IMAGES = setting("BENCH_TAG_IMAGES", 1_000_000)
#: Copies made of each of 40 UKBench photos.
COPY_KINDS = (
    "jpeg q30",
    "half size",
    "quarter size, jpeg q50",
    "crop 90%",
    "crop 75%",
    "png",
    "grayscale",
    "mirrored",
)


def _ukbench() -> list[str]:
    return sorted(str(p) for p in (data_root() / "ukbench").glob("ukbench*.jpg"))


def tag_figures(work: Path) -> dict:
    """Seconds of the network pass with and without classes, and of builds with and without tags."""
    from imagelearn.retrieval import IndexParams, build_index
    from imagelearn.retrieval.global_descriptors import GeMDescriptor
    from imagelearn.retrieval.tags import describe_with_classes

    photos = _ukbench()[:100]
    thumbnails = sorted(
        str(p)
        for p in (Path(__file__).resolve().parents[1] / "examples/flowers5_sample").rglob("*.jpg")
    )[:40]
    descriptor = GeMDescriptor(cache_dir="")
    describe_with_classes(descriptor, photos[:2] + thumbnails[:2])  # networks built, exported
    descriptor.transform(photos[:2])
    figures = {}
    for name, paths in (("ukbench", photos), ("thumbnails", thumbnails)):
        seconds, _ = interleaved(
            {
                "descriptor": lambda p=paths: descriptor.transform(p),
                "descriptor+tags": lambda p=paths: describe_with_classes(descriptor, p),
            },
            REPEATS,
        )
        figures[name] = {
            "images": len(paths),
            "descriptor_ms_per_image": spread(
                [s * 1000 / len(paths) for s in seconds["descriptor"]]
            ),
            "with_tags_ms_per_image": spread(
                [s * 1000 / len(paths) for s in seconds["descriptor+tags"]]
            ),
            "ratio": ratio_spread(seconds["descriptor+tags"], seconds["descriptor"]),
        }
    counter = iter(range(1000))

    def build(tags: bool) -> None:
        number = next(counter)
        os.environ["IMAGELEARN_CACHE"] = str(work / f"cache{number}")  # nothing cached
        params = IndexParams(
            vocabulary_params={"branching": 10, "depth": 4, "n_iter": 10},
            global_descriptor=True,
            tags=tags,
        )
        build_index(photos, work / f"build{number}", params, cache_dir=False)

    seconds, _ = interleaved(
        {"without": lambda: build(False), "with": lambda: build(True)}, REPEATS
    )
    figures["build"] = {
        "images": len(photos),
        "without_s": spread(seconds["without"]),
        "with_s": spread(seconds["with"]),
        "ratio": ratio_spread(seconds["with"], seconds["without"]),
        "tags_ms_per_image": spread(
            [
                (w - o) * 1000 / len(photos)
                for w, o in zip(seconds["with"], seconds["without"], strict=True)
            ]
        ),
    }
    return figures


def tag_search_figures(work: Path) -> dict:
    """Milliseconds of searches in a generated catalogue tag table (min of REPEATS calls)."""
    import sqlite3

    from imagelearn.classify.weights import imagenet_categories
    from imagelearn.retrieval.tags import (
        IMAGENET_TOP,
        StoredTags,
        Tag,
        create_tag_tables,
        insert_tags,
    )

    path, names = work / "tags.sqlite", imagenet_categories()
    connection = sqlite3.connect(path)
    create_tag_tables(connection)
    rng = np.random.default_rng(0)
    popularity = 1 / np.arange(1, len(names) + 1) ** 0.8
    popularity /= popularity.sum()
    chunk = 100_000
    for start in range(0, N_TAG_IMAGES, chunk):
        count = min(chunk, N_TAG_IMAGES - start)
        classes = np.array(
            [
                rng.choice(len(names), IMAGENET_TOP, replace=False, p=popularity)
                for _ in range(count)
            ]
        )
        scores = np.sort(rng.random((count, IMAGENET_TOP)), axis=1)[:, ::-1]
        with connection:
            insert_tags(
                connection,
                (
                    (start + row, Tag("imagenet", names[c], float(score)))
                    for row in range(count)
                    for c, score in zip(classes[row], scores[row], strict=True)
                ),
            )
    connection.close()
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    live = np.ones(N_TAG_IMAGES, bool)
    table = StoredTags(read_only, live)
    among = rng.choice(N_TAG_IMAGES, 300, replace=False).tolist()
    calls = {
        'search("daisy")': lambda: table.search("daisy"),
        'search("dog")': lambda: table.search("dog"),
        'search("c")': lambda: table.search("c"),
        'search("c", among=300 ids)': lambda: table.search("c", among=among),
        "of(100 ids)": lambda: table.of(among[:100]),
        "counts() (first call; kept after)": lambda: StoredTags(read_only, live).counts(),
    }
    return {
        "images": N_TAG_IMAGES,
        "rows": N_TAG_IMAGES * IMAGENET_TOP,
        "megabytes": round(path.stat().st_size / 1e6),
        "ms": {
            name: round(min(timed(call)[0] for _ in range(REPEATS)) * 1000, 2)
            for name, call in calls.items()
        },
    }


class _Descriptors:
    """What :func:`compute_map` reads of an index, over given descriptors."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def ids(self) -> np.ndarray:
        return np.arange(len(self.vectors))

    def global_descriptors(self, ids) -> np.ndarray:
        return self.vectors[np.asarray(ids)]


def map_figures(index_dir: Path) -> dict:
    from imagelearn.retrieval import Index
    from imagelearn.retrieval.global_descriptors import l2_normalize
    from imagelearn.retrieval.image_map import TSNE_LIMIT, compute_map

    index = Index.open(index_dir)
    seconds, _ = interleaved({"ukbench": lambda: compute_map(index)}, REPEATS)
    figures = {"500 (UKBench index)": spread(seconds["ukbench"])}
    real = index.global_descriptors(index.ids())
    rng = np.random.default_rng(0)
    for n in (10_000, 50_000):
        copies = np.repeat(real, n // len(real), axis=0)
        vectors = l2_normalize(copies + rng.normal(0, 0.02, copies.shape).astype(np.float32))
        elapsed = [timed(lambda v=vectors: compute_map(_Descriptors(v)))[0] for _ in range(1)]
        figures[f"{n} (descriptors from it{', sampled' if n > TSNE_LIMIT else ''})"] = spread(
            elapsed
        )
    return figures


def _make_copies(originals: list[str], folder: Path) -> dict[str, list[tuple[str, str]]]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[tuple[str, str]]] = {kind: [] for kind in COPY_KINDS}
    for original in originals:
        image = Image.open(original).convert("RGB")
        width, height = image.size
        stem = Path(original).stem
        versions = {
            "jpeg q30": (image, 30),
            "half size": (image.resize((width // 2, height // 2), Image.BILINEAR), 90),
            "quarter size, jpeg q50": (image.resize((width // 4, height // 4), Image.BILINEAR), 50),
            "crop 90%": (
                image.crop((width // 20, height // 20, width - width // 20, height - height // 20)),
                90,
            ),
            "crop 75%": (
                image.crop((width // 8, height // 8, width - width // 8, height - height // 8)),
                90,
            ),
            "png": (image, None),
            "grayscale": (image.convert("L").convert("RGB"), 90),
            "mirrored": (image.transpose(Image.FLIP_LEFT_RIGHT), 90),
        }
        for number, (kind, (picture, quality)) in enumerate(versions.items()):
            path = folder / f"{stem}_{number}.{'png' if quality is None else 'jpg'}"
            picture.save(path, **({} if quality is None else {"quality": quality}))
            made[kind].append((str(Path(original).resolve()), str(path.resolve())))
    return made


def duplicate_figures(index_dir: Path, copies: dict[str, list[tuple[str, str]]]) -> dict:
    from imagelearn.retrieval import Index
    from imagelearn.retrieval.duplicates import CANDIDATES, similarity_deviation

    index = Index.open(index_dir)
    records = index.records(index.ids().tolist())
    id_of = {record.path: image_id for image_id, record in records.items()}

    def signals(a: int, b: int) -> tuple[float, float, float]:
        first, second = index.global_descriptors([a, b])
        matches = index.search_id(a, 30, mode="hybrid", shortlist=30, verify_top=30).matches
        match = next((m for m in matches if m.image_id == b), None)
        if match is None:
            return float(first @ second), 0.0, float("inf")
        smaller = min(records[a].n_features, records[b].n_features)
        deviation = similarity_deviation(match, records[a].width, records[a].height)
        return float(first @ second), match.inliers / max(1, smaller), deviation

    photos = [str(Path(p).resolve()) for p in _ukbench()]
    kinds = {"views of one object": []}
    for first in range(0, 200, 4):  # 50 objects, their 150 pairs of views
        for other in range(1, 4):
            kinds["views of one object"].append(
                signals(id_of[photos[first]], id_of[photos[first + other]])
            )
    for kind, pairs in copies.items():
        kinds[kind] = [signals(id_of[copy], id_of[original]) for original, copy in pairs]
    table = {}
    for kind, values in kinds.items():
        values = np.array(values)
        table[kind] = {
            "pairs": len(values),
            "gem_cosine": spread(values[:, 0], 3),
            "inlier_fraction": spread(values[:, 1], 3),
            "deviation_median": round(float(np.median(values[:, 2])), 3),
        }
    elapsed, groups = timed(index.duplicate_groups)
    original_of = {copy: original for pairs in copies.values() for original, copy in pairs}
    kind_of = {copy: kind for kind, pairs in copies.items() for _, copy in pairs}
    found = {kind: 0 for kind in copies}
    linked_views = 0
    for group in groups:
        paths = [records[i].path for i in group]
        for path in paths:
            if path in kind_of and original_of[path] in paths:
                found[kind_of[path]] += 1
        originals = [p for p in paths if p not in kind_of]
        linked_views += len(originals) - 1 if len(originals) > 1 else 0
    return {
        "signals": table,
        "found": {kind: f"{count}/{len(copies[kind])}" for kind, count in found.items()},
        "views_linked": linked_views,
        "view_pairs": 750,
        "groups": len(groups),
        "seconds": round(elapsed, 2),
        "ms_per_image": round(elapsed * 1000 / len(records), 2),
        "candidates": CANDIDATES,
        "images": len(records),
    }


def main() -> str:
    from imagelearn.retrieval import IndexParams, build_index

    info = machine()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        os.environ["IMAGELEARN_CACHE"] = str(work / "cache")
        photos = _ukbench()
        rng = np.random.default_rng(0)
        originals = [photos[i] for i in sorted(rng.choice(len(photos), 40, replace=False))]
        copies = _make_copies(originals, work / "copies")
        index_dir = work / "ukbench.index"
        everything = photos + [copy for pairs in copies.values() for _, copy in pairs]
        build_index(everything, index_dir, IndexParams(global_descriptor=True))
        results = {
            "duplicates": duplicate_figures(index_dir, copies),
            "map": map_figures(index_dir),
            "tags": tag_figures(work),
            "tag_search": tag_search_figures(work),
        }
    info = finish_machine(info)
    atomic_write_json(RESULTS, {**results, "machine": info})
    return markdown(results, info)


def markdown(results: dict, info: dict) -> str:
    tags, figures, duplicates = results["tags"], results["map"], results["duplicates"]
    lines = [
        "## Browsing an index: tags, the 2-D map, near duplicates (`bench_browse`)",
        "",
        f"{REPEATS} interleaved rounds, median (min-max), nothing cached. Machine: "
        f"{describe_machine(info)}.",
        "",
        "ImageNet tags come from the global descriptor's network pass (MobileNetV2, longer side "
        "384); thumbnails that the resize would enlarge more than 1.5 times get a second pass at "
        "224 pixels:",
        "",
        "| images | descriptor alone, ms/image | descriptor + tags, ms/image | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (
        ("ukbench", "UKBench 320 x 240"),
        ("thumbnails", "flower thumbnails 128 px"),
    ):
        row = tags[name]
        lines.append(
            f"| {row['images']} {label} | {format_spread(row['descriptor_ms_per_image'])} | "
            f"{format_spread(row['with_tags_ms_per_image'])} | {format_spread(row['ratio'], 'x')} |"
        )
    build = tags["build"]
    lines += [
        "",
        f"A whole build of {build['images']} UKBench photos (RootSIFT, 10^4-word tree, GeM): "
        f"{format_spread(build['without_s'], ' s')} without tags, "
        f"{format_spread(build['with_s'], ' s')} with ({format_spread(build['ratio'], 'x')}; "
        f"{format_spread(build['tags_ms_per_image'], ' ms')} per image).",
        "",
        "The map (`compute_map`: PCA to 50, t-SNE with 500 iterations up to 10,000 images, "
        "the rest placed among their 5 nearest laid-out images):",
        "",
        "| images | seconds |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {format_spread(value)} |" for name, value in figures.items()]
    search = results["tag_search"]
    lines += [
        "",
        f"Tag search in a catalogue of {search['images']:,} images x 5 tags ({search['rows']:,} "
        f"rows, {search['megabytes']} MB; generated), milliseconds (min of {REPEATS} calls):",
        "",
        "| call | ms |",
        "|---|---:|",
    ]
    lines += [f"| `{name}` | {ms} |" for name, ms in search["ms"].items()]
    lines += [
        "",
        f"Near duplicates, on an index of UKBench's 500 photos and 8 copies of 40 of them "
        f"({duplicates['images']} images, default parameters): per pair, the whitened GeM "
        "cosine, the RANSAC inliers as a fraction of the smaller image's features, and the "
        "homography's departure from a change of scale and position (median; the rule: "
        "fraction >= 0.25 and departure <= 0.1):",
        "",
        "| pairs | n | GeM cosine | inlier fraction | departure | found as copies |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, row in duplicates["signals"].items():
        found = duplicates["found"].get(kind, f"{duplicates['views_linked']} of 750 linked")
        lines.append(
            f"| {kind} | {row['pairs']} | {format_spread(row['gem_cosine'], digits=3)} | "
            f"{format_spread(row['inlier_fraction'], digits=3)} | {row['deviation_median']} | "
            f"{found} |"
        )
    lines += [
        "",
        f"`duplicate_groups()` took {duplicates['seconds']} s ({duplicates['ms_per_image']} ms "
        f"per image, {duplicates['candidates']} candidates each); {duplicates['groups']} groups.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(main())
