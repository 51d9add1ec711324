"""Start-up: the heavy libraries are imported only where they are used.

Checked in a fresh interpreter through ``sys.modules`` (other tests have imported everything
into this one), so the checks hold however loaded the machine is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

#: Libraries that take a noticeable part of a second (or several) to import.
HEAVY = (
    "torch",
    "torchvision",
    "onnxruntime",
    "faiss",
    "cv2",
    "sklearn",
    "scipy",
    "matplotlib",
    "ray",
)
#: The deep-learning runtimes, imported only once a network runs.
DEEP = ("torch", "torchvision", "onnxruntime")


def heavy_imports(code: str) -> set[str]:
    """The :data:`HEAVY` libraries loaded once ``code`` has run in a fresh interpreter."""
    report = f"import json, sys; print(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))"
    completed = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return set(json.loads(completed.stdout.splitlines()[-1]))


def test_the_help_of_every_command_imports_no_heavy_library():
    code = "\n".join(
        [
            "import contextlib, io",
            "from imagelearn.cli.main import build_parser, main",
            "build_parser().format_help()",
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):",
            "    main(['index', 'search', '--help'])",
        ]
    )
    assert heavy_imports(code) == set()


def test_importing_the_packages_imports_no_deep_learning_library():
    packages = ("bof", "classify", "cluster", "data", "evaluation", "features", "retrieval")
    code = "\n".join(f"import imagelearn.{name}" for name in packages)
    assert heavy_imports(code) == set()
    assert not heavy_imports("from imagelearn.retrieval import Index, IndexParams") & set(DEEP)
