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


def test_workers_write_the_frame_and_plot_compares_studies_of_other_storages(studies, tmp_path, capsys):
    url = f"journal:{tmp_path / 'shared.log'}"
    results = tmp_path / "results"
    for name in ("ja", "jb"):
        SearchRun.create(SearchSpace.load(_space(tmp_path)), name=name, storage=url, results_dir=results, trials=2)
        assert main(["worker", "--name", name, "--storage", url, "--results-dir", str(results), "--no-progress"]) == 0
        # a study trained only by workers has its trials.csv/parquet too
        assert (results / name / "trials.parquet").exists()
        assert (results / name / "trials.csv").read_text().count("\n") == 3  # header + 2 trials
    capsys.readouterr()
    # two studies in one shared storage
    assert main(["plot", "ja", "--storage", url, "--results-dir", str(results), "--compare", "jb"]) == 0
    assert (results / "ja" / "plots" / "compare.png").stat().st_size > 1000
    # a default SQLite study next to one kept elsewhere: STUDY=URL
    assert main(["plot", "one", "--results-dir", str(studies), "--compare", f"ja={url}", "two",
                 "--out", str(tmp_path / "mixed")]) == 0
    assert (tmp_path / "mixed" / "compare.svg").exists()
    capsys.readouterr()
    assert main(["plot", "ja", "--storage", url, "--results-dir", str(results), "--compare", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no study 'nope' in --storage" in err and "nope=URL" in err and err.count("\n") == 1
    assert main(["plot", "ja", "--storage", url, "--results-dir", str(results), "--compare", "=x"]) == 2
    assert "expected STUDY or STUDY=URL" in capsys.readouterr().err


def test_compared_studies_of_the_same_name_are_both_drawn(studies, tmp_path, capsys):
    import matplotlib

    url = f"journal:{tmp_path / 'elsewhere.log'}"
    SearchRun.create(SearchSpace.load(_space(tmp_path)), name="one", storage=url, results_dir=tmp_path / "r", trials=2)
    assert main(["worker", "--name", "one", "--storage", url, "--results-dir", str(tmp_path / "r"), "--no-progress"]) == 0
    capsys.readouterr()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # legend text stays text in the SVG
        assert main(["plot", "one", "--results-dir", str(studies), "--compare", f"one={url}", "--out", str(tmp_path / "p")]) == 0
    svg = (tmp_path / "p" / "compare.svg").read_text()
    assert "(2 studies)" in svg and f"one ({url})" in svg and f"one (sqlite:///{studies / 'one' / 'study.db'})" in svg
    capsys.readouterr()
    assert main(["plot", "one", "--results-dir", str(studies), "--compare", "one"]) == 2
    assert "names study one" in capsys.readouterr().err


def test_resume_refuses_a_total_below_the_trials_already_trained(studies, capsys):
    assert main(["resume", "one", "--trials", "2", "--results-dir", str(studies), "--dispatch", "none"]) == 2
    err = capsys.readouterr().err
    assert "--trials 2 is below the 3 trials" in err and "--trials 3 or more" in err
    assert SearchRun.open("one", results_dir=studies).target == 3


def test_output_cut_by_a_closed_pipe_ends_quietly(studies):
    """`stsearch status NAME | head -1`: the reader leaves before stsearch writes; no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "stsearch", "status", "one", "--results-dir", str(studies)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # long before the process has imported torch and written anything
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_results_outputs_in_odd_places(studies, tmp_path, capsys):
    nested = tmp_path / "new" / "dir" / "front.csv"
    assert main(["pareto", "one", "--results-dir", str(studies), "--csv", str(nested)]) == 0
    assert nested.read_text().startswith("number,")
    capsys.readouterr()
    assert main(["pareto", "one", "--results-dir", str(studies), "--csv", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["plot", "one", "--results-dir", str(studies), "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err
    # an unknown --compare study is found missing before any image is drawn
    assert main(["plot", "one", "--results-dir", str(studies), "--compare", "nosuch", "--out", str(tmp_path / "p")]) == 2
    assert not (tmp_path / "p").exists()
