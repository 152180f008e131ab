"""Installed from a wheel (not editable), stsearch still finds its shipped search spaces.

The wheel is built from this checkout and installed with ``pip install --target`` into a temporary
folder, put first on ``sys.path`` (``PYTHONPATH``) of the venv's Python, run from a folder without
``search_spaces/``: the repository is nowhere on the path, so the spaces must come from the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import shutil

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
import stsearch
from stsearch.space import load_space, space_dir
space = load_space("digits")
print(json.dumps({"file": stsearch.__file__, "space_dir": str(space_dir()),
                  "spaces": sorted(p.stem for p in space_dir().glob("*.yaml")),
                  "plans": sorted(p.name for p in (space_dir() / "plans").glob("*.yaml")),
                  "default": space.name, "source": str(space.source)}))
"""


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_ships_search_spaces(tmp_path: Path) -> None:
    wheels, site, work, src = tmp_path / "wheels", tmp_path / "site", tmp_path / "work", tmp_path / "src"
    work.mkdir()
    src.mkdir()  # a copy of the sources: the build's folders (build/, *.egg-info) stay out of the checkout
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("stsearch", "search_spaces"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = _run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
                 cwd=tmp_path, env=env, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("stsearch-*.whl")
    installed = _run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
                     cwd=tmp_path, env=env, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert (site / "stsearch" / "search_spaces" / "digits.yaml").is_file()

    env["PYTHONPATH"] = str(site)  # before the venv's site-packages (and its editable finder)
    probe = _run([sys.executable, "-c", PROBE], cwd=work, env=env)
    assert probe.returncode == 0, probe.stderr[-3000:]
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(site.resolve()), got  # the wheel's stsearch, not the repo
    assert Path(got["space_dir"]).resolve().is_relative_to(site.resolve()), got
    assert {"digits", "all_families"} <= set(got["spaces"]), got
    assert got["plans"], got
    assert got["default"] == "digits-default" and Path(got["source"]).resolve().is_relative_to(site.resolve())

    # `stsearch search` with no space argument: the default space, found in the wheel
    search = _run([sys.executable, "-m", "stsearch", "search", "--dispatch", "none", "--trials", "1",
                   "--no-progress", "--results-dir", str(work / "results")], cwd=work, env=env)
    assert search.returncode == 0, search.stderr[-3000:]
    assert "study digits-default" in search.stderr and "resnet8_digits on digits" in search.stderr, search.stderr
    assert not (work / "search_spaces").exists()
