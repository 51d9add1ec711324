"""Start-up: what a CLI call pays before any work, against importing the libraries up front.

Run: ``python -m bench.run_all startup``. Writes ``bench/results/startup.json`` and returns a
Markdown table.

Every figure is the wall time of a fresh process (``python -m imagelearn ...``), timed from
outside, in interleaved rounds (``BENCH_REPEATS``, default 5):

- the interpreter alone (``python -c pass``), the floor of every call;
- ``imagelearn --help``, whose goal is under 1 s;
- importing torch, torchvision, OpenCV, scikit-learn, FAISS and ONNX Runtime: what a CLI
  that imports its libraries up front pays before it parses its arguments;
- a warm ``imagelearn index search INDEX QUERY --json`` (default mode, hybrid, and
  ``--mode local``) on an index of ``BENCH_STARTUP_IMAGES`` UKBench photos (default 100)
  built by ``imagelearn index build`` with its defaults. "Before its first stage" is the
  process's wall time less the stages the search reports in its ``timings`` (features and
  descriptor run at the same time, then ranking and verification): start-up, the index opened,
  the answer printed. Its goal is under 1 s. Warm: the index and the ONNX export are in the
  page cache and on disk (one search of each mode ran first, not timed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import data_root
from bench.common import (
    REPEATS,
    describe_machine,
    format_spread,
    machine,
    ratio_spread,
    rounds,
    setting,
    spread,
    write_results,
)

RESULTS = Path(__file__).resolve().parent / "results" / "startup.json"
N_IMAGES = setting("BENCH_STARTUP_IMAGES", 100)
#: The libraries imagelearn imports only where they are used.
EAGER_IMPORTS = "import torch, torchvision, cv2, sklearn, faiss, onnxruntime"
#: Goal of ``--help`` and of a warm search's time before its first stage, seconds.
GOAL_S = 1.0


def run_process(arguments: list[str], environment: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of ``python ARGUMENTS`` in a fresh process, and its standard output."""
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, *arguments], env=environment, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - start, completed.stdout


def stage_seconds(timings: dict[str, float]) -> float:
    """Seconds a search spent in its stages (``SearchResult.timings``, milliseconds)."""
    described = max(timings.get("features_ms", 0.0), timings.get("descriptor_ms", 0.0))
    return (described + timings.get("ranking_ms", 0.0) + timings.get("verification_ms", 0.0)) / 1000


def search_call(index: Path, query: str, environment: dict[str, str], *mode: str):
    """A timed ``imagelearn index search``: ``{"seconds", "before_first_stage_s", "mode"}``."""

    def call() -> dict[str, Any]:
        seconds, output = run_process(
            ["-m", "imagelearn", "index", "search", str(index), query, "--json", *mode],
            environment,
        )
        result = json.loads(output)
        if result["results"][0]["path"] != query:
            raise AssertionError(f"{query} did not rank first: {result['results'][:3]}")
        return {
            "seconds": seconds,
            "before_first_stage_s": seconds - stage_seconds(result["timings"]),
            "mode": result["mode"],
        }

    return call


def main() -> str:
    info = machine()
    photos = sorted(str(path) for path in (data_root() / "ukbench").glob("ukbench*.jpg"))
    if len(photos) < N_IMAGES:
        print(f"UKBench not found under {data_root()} (set IMAGELEARN_DATA)", file=sys.stderr)
        return "## Start-up\n\nNot run: the real data is missing.\n"
    with tempfile.TemporaryDirectory(prefix="bench_startup") as scratch:
        index = Path(scratch) / "index"
        environment = {
            **os.environ,
            "IMAGELEARN_CACHE": str(Path(scratch) / "cache"),
            "IMAGELEARN_QUIET": "1",
        }
        print(f"  index build on {N_IMAGES} UKBench photos", flush=True)
        build_s, _ = run_process(
            ["-m", "imagelearn", "index", "build", *photos[:N_IMAGES], "--out", str(index)],
            environment,
        )
        query = photos[5]
        methods = {
            "interpreter": lambda: run_process(["-c", "pass"], environment)[0],
            "help": lambda: run_process(["-m", "imagelearn", "--help"], environment)[0],
            "eager_imports": lambda: run_process(["-c", EAGER_IMPORTS], environment)[0],
            "search_default": search_call(index, query, environment),
            "search_local": search_call(index, query, environment, "--mode", "local"),
        }
        methods["search_default"](), methods["search_local"]()  # warm: not timed
        print(f"  {REPEATS} interleaved rounds", flush=True)
        measured = rounds(methods)
    searches = {name: measured.pop(name) for name in ("search_default", "search_local")}
    results: dict[str, Any] = {
        "n_images": N_IMAGES,
        "build_s": round(build_s, 1),
        "seconds": {name: spread(values) for name, values in measured.items()},
        "help_over_eager_imports": ratio_spread(measured["help"], measured["eager_imports"]),
        "searches": {
            name: {
                "mode": calls[0]["mode"],
                "seconds": spread(call["seconds"] for call in calls),
                "before_first_stage_s": spread(call["before_first_stage_s"] for call in calls),
            }
            for name, calls in searches.items()
        },
    }
    return section(write_results(RESULTS, results, info))


def section(results: dict[str, Any]) -> str:
    """The README section of one run's results."""
    seconds, searches = results["seconds"], results["searches"]
    lines = [
        "## Start-up: what a CLI call pays before any work",
        "",
        f"Wall time of fresh processes, median (min-max) over {len(seconds['help']['values'])} "
        f"interleaved rounds; {describe_machine(results['machine'])}. The searches run on an "
        f"index of {results['n_images']} UKBench photos built by `imagelearn index build` "
        f"with its defaults ({results['build_s']:.0f} s), warm (a search of each mode ran "
        "first); before the first stage is the wall time less the stages the search reports "
        f"(start-up, opening the index, printing). Goal: under {GOAL_S:.0f} s for `--help` and "
        "for a search's time before its first stage.",
        "",
        "| process | wall s | before its first stage, s |",
        "|---|---|---|",
        f"| `python -c pass` (the interpreter) | {format_spread(seconds['interpreter'])} | |",
        f"| `imagelearn --help` | **{format_spread(seconds['help'])}** | |",
        f'| `python -c "{EAGER_IMPORTS}"` (the libraries imported up front) '
        f"| {format_spread(seconds['eager_imports'])} | |",
        *(
            f"| `imagelearn index search` ({search['mode']}{label}) "
            f"| {format_spread(search['seconds'])} "
            f"| **{format_spread(search['before_first_stage_s'])}** |"
            for label, search in (
                (", the default", searches["search_default"]),
                (", `--mode local`", searches["search_local"]),
            )
        ),
        "",
        f"`imagelearn --help` takes {format_spread(results['help_over_eager_imports'], 'x', 3)} "
        "the time of importing the libraries up front, in the same rounds.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
