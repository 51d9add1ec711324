"""The README's Python example runs as a plain script and through standard input.

Process pools that spawn workers re-import ``__main__``; an unguarded script then crashes
(``RuntimeError ... bootstrapping phase``) and ``python -`` fails (``'<stdin>'``). The
execution layer's workers must not depend on the main module, wherever Python runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "flowers5_sample"
#: Images per class copied for the run: enough for a stratified split, few enough to be quick.
PER_CLASS = 6


def readme_example() -> str:
    """The first ```python block of README.md."""
    match = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert match, "README.md has no ```python block"
    return match.group(1)


def small_script(tmp_path: Path) -> str:
    """The README example on a few real images, with small vocabularies."""
    photos = tmp_path / "photos"
    for folder in sorted(path for path in SAMPLE.iterdir() if path.is_dir())[:2]:
        (photos / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:PER_CLASS]:
            shutil.copy(image, photos / folder.name / image.name)
    script = readme_example()
    replacements = {
        '"photos/"': repr(str(photos)),
        "n_words=1000": "n_words=16",
        "BofClassifier()": 'BofClassifier(channels=[{"detector": "dense_rootsift", "n_words": 16}])',
        '"runs/flowers"': repr(str(tmp_path / "runs" / "flowers")),
    }
    for old, new in replacements.items():
        assert old in script, f"the README example changed: {old} not found; update this test"
        script = script.replace(old, new)
    return script


def run_python(arguments: list[str], tmp_path: Path, stdin: str | None = None) -> None:
    environment = {
        **os.environ,
        "IMAGELEARN_CACHE": str(tmp_path / "cache"),  # cold: workers must do the work
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    completed = subprocess.run(
        [sys.executable, *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    accuracy = float(completed.stdout.strip().splitlines()[0])
    assert 0.0 <= accuracy <= 1.0


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="examples/flowers5_sample is missing")
def test_readme_example_runs_as_an_unguarded_script(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(small_script(tmp_path))
    assert "__main__" not in script.read_text()
    run_python([str(script)], tmp_path)


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="examples/flowers5_sample is missing")
def test_readme_example_runs_from_standard_input(tmp_path: Path) -> None:
    run_python(["-"], tmp_path, stdin=small_script(tmp_path))
