"""The README's "Your own model" example, run as written: its files and commands are read from the
README's marked blocks, so the two cannot drift apart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_imagefolder import write_pngs

README = Path(__file__).resolve().parents[1] / "README.md"


def example_blocks() -> dict[str, str]:
    """``<!-- example: NAME -->`` followed by a fenced block -> NAME: the block's text."""
    found = re.findall(r"<!-- example: (\S+) -->\s*\n```[a-z]*\n(.*?)\n```", README.read_text(), flags=re.S)
    return {name: body + "\n" for name, body in found}


def test_the_readme_marks_the_example_files_and_commands():
    assert set(example_blocks()) == {"my_project.py", "my_space.yaml", "run"}


@pytest.mark.slow
def test_the_readme_own_model_example_runs_as_written(tmp_path):
    blocks = example_blocks()
    for name in ("my_project.py", "my_space.yaml"):
        (tmp_path / name).write_text(blocks[name])
    write_pngs(tmp_path / "data" / "images", {"train": 4, "val": 2})  # the user's images
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": ""}
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks["run"]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "my_project:make_net on imagefolder:" in out.stdout  # stsearch layers
    assert "2/2 trained" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "torch.Size([1, 10])"
    trial = next((tmp_path / "results" / "my-net" / "trials").iterdir())
    import json

    spec = json.loads((trial / "trial.json").read_text())
    assert spec["trainer"] == "my_project:fit" and spec["init"] == "decompose"
    assert spec["pretrained"] == str(tmp_path / "dense.pt")
    history = json.loads((trial / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]  # reported by the user's loop
