"""``stsearch pareto``, ``plot`` (with --compare) and ``status`` on real small studies."""

import subprocess
import sys

import pytest

from stsearch.cli import main
from stsearch.search.local import run_local
from stsearch.search.run import SearchRun
from stsearch.space import SearchSpace

from .test_search import _space

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    results = tmp / "results"
    for name, seed in (("one", 0), ("two", 1)):
        run = SearchRun.create(SearchSpace.load(_space(tmp, seed=seed)), name=name, results_dir=results, trials=3)
        run_local(run)
    return results


def test_pareto_prints_front_knee_and_writes_csv(studies, capsys):
    assert main(["pareto", "one", "--results-dir", str(studies), "--min-cf", "2"]) == 0
    out = capsys.readouterr().out
    assert "hypervolume" in out and "knee: trial" in out and "best with compression >= 2" in out
    assert (studies / "one" / "pareto.csv").read_text().startswith("number,")
    assert (studies / "one" / "trials.csv").exists() and (studies / "one" / "trials.parquet").exists()


def test_plot_writes_png_and_svg_and_compares_studies(studies, capsys):
    assert main(["plot", "one", "--compare", "two", "--results-dir", str(studies)]) == 0
    written = capsys.readouterr().out.split()
    for stem in ("front", "hypervolume", "layers", "compare"):
        for ext in ("png", "svg"):
            path = studies / "one" / "plots" / f"{stem}.{ext}"
            assert str(path) in written and path.stat().st_size > 1000
    assert (studies / "one" / "plots" / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_shows_counts_and_front(studies):
    out = subprocess.run([sys.executable, "-m", "stsearch", "status", "one", "--results-dir", str(studies)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "3/3 trained" in out.stdout and "Pareto front so far" in out.stdout


def test_results_commands_on_unknown_or_empty_studies(studies, tmp_path, capsys):
    assert main(["pareto", "nope", "--results-dir", str(studies)]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
    SearchRun.create(SearchSpace.load(_space(tmp_path)), name="empty", results_dir=studies, trials=1)
    assert main(["pareto", "empty", "--results-dir", str(studies)]) == 2
    assert "no finished full-budget trial" in capsys.readouterr().err
