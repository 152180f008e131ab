"""Wall time of the commands that only read a study: ``stsearch --help``, ``status``, ``pareto``, ``plot``.

What it measures
----------------
A study of ``--trials`` no-op trials (default 20) on the default space (``search_spaces/digits.yaml``,
SQLite), made once. Then each command runs ``--repeats`` times (default 5) as a fresh process
(``python -m stsearch ...``, as a user types it), and the median and minimum wall times are reported,
next to ``python -c "import torch"`` and ``python -c "import optuna, pandas"`` timed the same way (what
importing torch would add, and the floor set by Optuna and pandas). Target (issue #15): under 1.5 s
each, from 6.2 s (``status``) and 8.4 s (``pareto``) when they imported torch.

Outputs (``--out-dir``, default ``benchmarks/results/``): ``cli_latency.csv``, ``cli_latency.md`` and
``cli_latency.png``.

How to run
----------
::

    .venv/bin/python benchmarks/cli_latency.py
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import available_cores, cpu_model, load_average, report_header  # noqa: E402


def make_study(results: Path, trials: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    from stsearch.search.run import SearchRun
    from stsearch.space import load_space

    run = SearchRun.create(load_space("digits"), name="cli", results_dir=results, trials=trials)
    rng = random.Random(0)
    while (claim := run.claim()) is not None:
        run.finish(claim, {"status": "completed", "val_acc": rng.random(), "full_budget": True,
                           "budget_fraction": 1.0, "epochs_done": 1})


def timed(argv: list[str], cwd: Path, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
        out.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr[-500:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cli-latency-"))
    make_study(work / "results", args.trials)
    py = sys.executable
    cases = {
        "stsearch --help": [py, "-m", "stsearch", "--help"],
        "stsearch status": [py, "-m", "stsearch", "status", "cli"],
        "stsearch pareto": [py, "-m", "stsearch", "pareto", "cli"],
        "stsearch plot": [py, "-m", "stsearch", "plot", "cli"],
        "import torch": [py, "-c", "import torch"],
        "import optuna, pandas": [py, "-c", "import optuna, pandas"],
    }
    load_start, started = load_average(), dt.datetime.now(dt.timezone.utc)
    rows = []
    for _ in range(1):  # one untimed round warms the file cache
        for argv_ in cases.values():
            subprocess.run(argv_, cwd=work, capture_output=True, timeout=300)
    for name, argv_ in cases.items():
        ts = timed(argv_, work, args.repeats)
        rows.append({"command": name, "median_s": statistics.median(ts), "min_s": min(ts), "repeats": len(ts),
                     "target_s": 1.5 if name.startswith("stsearch") else None})
    with open(out / "cli_latency.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = [r["command"] for r in rows]
    ax.barh(names, [r["median_s"] for r in rows], color=["#1f77b4"] * 4 + ["#999999"] * 2)
    ax.axvline(1.5, color="k", linestyle="--", linewidth=1, label="target 1.5 s")
    ax.invert_yaxis()
    ax.set_xlabel(f"wall time, median of {args.repeats} fresh processes (s)")
    ax.set_title(f"read-only commands on a {args.trials}-trial study")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cli_latency.png", dpi=110)
    plt.close(fig)
    command = "python benchmarks/cli_latency.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = report_header("Read-only commands: wall time of a fresh process", command.strip())
    lines += [f"Date: {started:%Y-%m-%d %H:%M} UTC. Machine: {available_cores()} cores, {cpu_model()}; load average "
              f"at start {load_start}, at end {load_average()}.", "",
              "| command | median (s) | min (s) | target |", "| --- | --- | --- | --- |"]
    lines += [f"| `{r['command']}` | {r['median_s']:.2f} | {r['min_s']:.2f} | "
              f"{'<= 1.5 s: ' + ('met' if r['median_s'] <= 1.5 else 'missed') if r['target_s'] else '-'} |"
              for r in rows]
    lines += ["", "![cli latency](cli_latency.png)", ""]
    (out / "cli_latency.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
