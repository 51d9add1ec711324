"""Run every benchmark (or those named) and rebuild the tables in bench/README.md.

Each ``bench/bench_<name>.py`` has ``main() -> str``: it runs its comparisons, writes
``bench/results/<name>.json`` and returns a Markdown section (heading, table of ratios).
Usage: ``python -m bench.run_all [name ...]``.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"
INTRO = """# Benchmarks

Run by hand with `make bench` (all) or `.venv/bin/python -m bench.run_all NAME` (one of:
{names}). Each compares imagelearn, in the same run and on the same data, with what a user
would pick instead, and reports ratios; raw figures are in `bench/results/NAME.json`.
Before claiming a Bag-of-Features speed figure, run `make bench-check` (a few minutes): it
reruns the BoF goals (vocabularies at MiniBatchKMeans's error for k=256 and k=1000, encoding
against OpenCV's BOW extractor) over at least 5 interleaved rounds, prints min / median / max
and fails when a goal's minimum is not met.
Machine: the figures below were measured on the development machine (2 cores, 24 GiB, no GPU)
unless a section says otherwise.
"""


def available() -> list[str]:
    return sorted(path.stem.removeprefix("bench_") for path in BENCH_DIR.glob("bench_*.py"))


def sections(text: str) -> dict[str, str]:
    """The ``<!-- bench:NAME -->`` sections of the README, by name."""
    pattern = re.compile(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->\n", re.S)
    return {match.group(1): match.group(2) for match in pattern.finditer(text)}


def write_sections(fresh: dict[str, str]) -> None:
    """Replace the named sections of the README (Markdown by benchmark name), keeping the others."""
    # read the README only now: sections written meanwhile (other runs, hand edits) are kept
    kept = sections(README.read_text(encoding="utf-8")) if README.exists() else {}
    kept.update({name: text.rstrip() + "\n" for name, text in fresh.items()})
    body = "".join(
        f"<!-- bench:{name} -->\n{kept[name]}<!-- /bench:{name} -->\n\n" for name in sorted(kept)
    )
    README.write_text(INTRO.format(names=", ".join(available())) + "\n" + body, encoding="utf-8")
    print(f"tables written to {README}")


def main(names: list[str]) -> int:
    names = names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available()}", file=sys.stderr)
        return 2
    fresh = {}
    for name in names:
        print(f"== bench {name}", flush=True)
        fresh[name] = importlib.import_module(f"bench.bench_{name}").main()
    write_sections(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
