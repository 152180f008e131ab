"""Smoke run of the layer benchmark script (benchmarks/layers.py --quick) in a subprocess."""

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "layers.py"
COLUMNS = [
    "shape",
    "c_in",
    "c_out",
    "hw",
    "batch",
    "method",
    "family",
    "forward",
    "rank",
    "t",
    "params",
    "matched_params",
    "cf",
    "macs_per_sample",
    "macs_batch_fwd",
    "macs_source",
    "median_ms",
    "p90_ms",
    "min_ms",
    "peak_mem_mb",
    "time_vs_dense",
    "mem_vs_dense",
    "repeats",
    "device",
    "mac_choice",
    "plain_mac_choice",
]


@pytest.mark.slow
def test_quick_layer_benchmark_writes_csv_and_markdown(tmp_path):
    out = tmp_path / "layers-cpu.csv"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert time.perf_counter() - start < 60

    with out.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert {r["shape"] for r in rows} == {"resnet32-64x64-8x8"}
    assert {r["batch"] for r in rows} == {"4"} and {r["repeats"] for r in rows} == {"1"}
    methods = {(r["method"], r["forward"]) for r in rows}
    assert ("dense", "-") in methods
    for family in ("tucker", "sttu", "tt", "stt", "tr", "str"):
        assert {(family, "dense"), (family, "factorized")} <= methods
    dense = next(r for r in rows if r["method"] == "dense")
    assert float(dense["time_vs_dense"]) == 1.0 and float(dense["cf"]) == 1.0
    assert int(dense["macs_per_sample"]) == 64 * 64 * 9 * 8 * 8
    for r in rows:
        assert float(r["median_ms"]) > 0 and float(r["peak_mem_mb"]) >= 0 and int(r["params"]) > 0
    ours = [r for r in rows if r["macs_source"] == "LayerCost"]
    assert len(ours) == 12 and all(float(r["cf"]) > 1 for r in ours)
    assert {r["mac_choice"] for r in ours} | {r["plain_mac_choice"] for r in ours} <= {"dense", "factorized"}
    assert all(r["mac_choice"] == r["plain_mac_choice"] == "" for r in rows if r["macs_source"] != "LayerCost")
    for r in rows:  # TensorLy-Torch rows, when installed, match our classical layer within 5 %
        if r["method"].startswith("tltorch-"):
            assert abs(int(r["params"]) - int(r["matched_params"])) <= 0.05 * int(r["matched_params"])

    md = out.with_suffix(".md").read_text()
    assert "benchmarks/layers.py --quick" in md and "| shape | method |" in md and "torch " in md
    assert "target [best mode no slower than dense" in proc.stdout
    assert "mac rule summary: auto (factorized MACs weighted" in proc.stdout


@pytest.mark.slow
def test_small_search_efficiency_benchmark_runs_every_method_for_exactly_the_grid_size(tmp_path):
    """One seed, ranks {8} (9 grid points), a fifth of an epoch per trial: every method trains
    exactly as many trials as the grid, the hypervolume never decreases, the report is written."""
    script = ROOT / "benchmarks" / "search_efficiency.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--seeds", "0", "--epochs", "0.2", "--ranks", "8", "8", "4", "--threads", "1",
         "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with (tmp_path / "search_efficiency.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    by_method: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    assert set(by_method) == {"grid", "random", "tpe", "stsearch"}
    for method, recs in by_method.items():
        assert [int(r["trial"]) for r in recs] == list(range(1, 10)), method
        hv = [float(r["hypervolume"]) for r in recs]
        assert all(b >= a for a, b in zip(hv, hv[1:])), method
    grid_families = sorted(r["baseline"] for r in by_method["grid"])
    assert len(set(grid_families)) == 9  # each uniform (family, rank 8, t) point once
    md = (tmp_path / "search_efficiency.md").read_text()
    assert "--ranks 8 8 4" in md and "| stsearch | 1 |" in md and "| tpe | 1 |" in md
    for name in ("search_efficiency.png", "search_efficiency_fronts.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow
def test_throughput_benchmark_smoke_run(tmp_path):
    out = tmp_path / "throughput-cpu.csv"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--device", "cpu", "--batch", "4", "--steps", "1",
         "--warmup", "0", "--plans", "resnet32:dense", "resnet32:str:10:2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["plan"], r["modes"]) for r in rows] == [
        ("resnet32:dense", "-"), ("resnet32:str:10:2", "macs"), ("resnet32:str:10:2", "auto"), ("resnet32:str:10:2", "tuned")]
    dense, macs, auto, tuned = rows
    assert float(dense["compression"]) == 1.0 and float(dense["vs_dense"]) == 1.0 and dense["layers"] == "0"
    assert float(macs["compression"]) == pytest.approx(8.6, abs=0.1)  # STR-ResNet-32 rank 10, t=2
    assert macs["layers"] == auto["layers"] == tuned["layers"] == "30"
    assert macs["tune_s"] == auto["tune_s"] == "" and float(tuned["tune_s"]) > 0
    # plain MAC counts run more STR layers factor by factor than the weighted default rule
    assert int(macs["factorized_layers"]) > int(auto["factorized_layers"])
    assert float(tuned["vs_macs"]) > 0 and float(tuned["images_per_s"]) > 0
    md = out.with_suffix(".md").read_text()
    assert "benchmarks/throughput.py" in md and "| plan | modes |" in md

    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--plans", "resnet32:tt"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "bad plan 'resnet32:tt'" in bad.stderr


def test_throughput_benchmark_compiled_twins(tmp_path):
    """--compile adds a torch.compile twin of each row, timed in the same rounds."""
    out = tmp_path / "throughput-cpu-compiled.csv"
    script = str(ROOT / "benchmarks" / "throughput.py")
    proc = subprocess.run(
        [sys.executable, script, "--device", "cpu", "--batch", "4", "--steps", "1", "--warmup", "1",
         "--plans", "resnet20:stt:4:2", "--modes", "auto", "--compile", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["modes"], r["compile"]) for r in rows] == [("auto", "-"), ("auto", "default")]
    eager, compiled = rows
    assert eager["compile_s"] == eager["vs_eager"] == "" and eager["compression"] == compiled["compression"]
    assert float(compiled["compile_s"]) > 0 and float(compiled["vs_eager"]) > 0
    assert "| plan | modes | compile |" in out.with_suffix(".md").read_text()

    bad = subprocess.run([sys.executable, script, "--compile", "--warmup", "0"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "--compile needs --warmup >= 1" in bad.stderr


def test_throughput_benchmark_times_exported_programs(tmp_path):
    """--inference --programs adds the programs `stsearch export` writes, unfolded and folded."""
    out = tmp_path / "programs.csv"
    script = str(ROOT / "benchmarks" / "throughput.py")
    proc = subprocess.run(
        [sys.executable, script, "--device", "cpu", "--inference", "--batch", "2", "--steps", "1", "--warmup", "0",
         "--plans", "resnet20:dense", "resnet20:stt:4:2", "--modes", "auto", "--programs", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["plan"], r["program"]) for r in rows] == [
        ("resnet20:dense", "-"), ("resnet20:dense", "exported"),
        ("resnet20:stt:4:2", "-"), ("resnet20:stt:4:2", "factorized"), ("resnet20:stt:4:2", "folded")]
    assert float(rows[1]["vs_dense"]) == 1.0 and all(float(r["images_per_s"]) > 0 for r in rows)
    assert rows[0]["program_mib"] == "" and all(float(r["program_mib"]) > 0 for r in rows if r["program"] != "-")
    assert "| plan | modes | compile | program |" in out.with_suffix(".md").read_text()

    bad = subprocess.run([sys.executable, script, "--programs"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--programs needs --inference" in bad.stderr
