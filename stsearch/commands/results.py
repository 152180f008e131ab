"""``stsearch pareto`` and ``stsearch plot``: what a study found."""

from __future__ import annotations

import argparse
from pathlib import Path

from .registry import command


def _study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="study name")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///results/<study>/study.db)")
    p.add_argument("--results-dir", default="results")


def _pareto_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--csv", help="where to write the front (default: results/<study>/pareto.csv)")
    p.add_argument("--min-cf", type=float, help="also print the most accurate trial with compression >= this")


def _plot_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--compare", nargs="+", default=[], metavar="STUDY[=URL]",
                   help="other studies to draw on one axis: looked up in --storage, then in results/<study>/study.db; "
                        "STUDY=URL names the storage of one")
    p.add_argument("--out", help="folder for the images (default: results/<study>/plots)")


def _open(args: argparse.Namespace):
    from ..search.study import StudyView  # reading a study needs neither its model nor torch

    return StudyView.open(args.name, storage=args.storage, results_dir=args.results_dir)


def _open_other(args: argparse.Namespace, entry: str):
    """A ``--compare`` study: ``NAME=URL``, else ``NAME`` in ``--storage``, else in its default SQLite file."""
    from ..search.study import StudyView as SearchRun

    name, sep, url = entry.partition("=")
    if sep:
        if not name or not url:
            raise ValueError(f"--compare {entry!r}: expected STUDY or STUDY=URL, e.g. other=journal:/shared/study.log")
        return SearchRun.open(name, storage=url, results_dir=args.results_dir)
    if args.storage:
        try:
            return SearchRun.open(name, storage=args.storage, results_dir=args.results_dir)
        except ValueError:
            if not (Path(args.results_dir) / name / "study.db").exists():
                raise ValueError(f"--compare: no study {name!r} in --storage nor under {args.results_dir}; "
                                 f"write {name}=URL for a study kept in another storage") from None
    return SearchRun.open(name, storage=None, results_dir=args.results_dir)


@command("pareto", _pareto_args)
def pareto(args: argparse.Namespace) -> int:
    """Pareto front of a study (finished full-budget feasible trials), knee, hypervolume; writes CSV."""
    from ..results import (best_at_constraint, default_reference, eligible_mask, hypervolume, knee_point,
                           pareto_front, pareto_table, save_frame, study_objectives, trials_frame)
    from ..search.storage import make_folder

    run = _open(args)
    df = trials_frame(run.study)
    save_frame(df, run.folder)
    objs = study_objectives(run.study)
    table = pareto_table(run.study)
    if not len(table):
        raise ValueError(f"study {run.name} has no finished full-budget trial yet; run 'stsearch status {run.name}'")
    out = Path(args.csv) if args.csv else run.folder / "pareto.csv"
    if out.is_dir():
        raise ValueError(f"--csv {out} is a folder; give a file name, e.g. --csv {out / 'pareto.csv'}")
    make_folder(out.parent, "the folder of --csv")
    table.to_csv(out, index=False)
    front = pareto_front(df, objs)
    ref = default_reference(df, objs)
    hv = hypervolume(front[[n for n, _ in objs]].to_numpy(float), [d for _, d in objs], ref)
    knee = knee_point(front, objs)
    print(table.to_string(index=False))
    print(f"\n{len(table)} trials on the front of {int(eligible_mask(df, objs).sum())} eligible; "
          f"hypervolume {hv:.4g} (reference {dict(zip([n for n, _ in objs], ref))})")
    print(f"knee: trial {int(knee['number'])} ({knee.get('family')}) " +
          ", ".join(f"{n} {knee[n]:.4g}" for n, _ in objs))
    if args.min_cf is not None:
        best = best_at_constraint(df, "accuracy", {"compression": (">=", args.min_cf)})
        print(f"best with compression >= {args.min_cf:g}: " + (
            "none" if best is None else f"trial {int(best['number'])} ({best.get('family')}), "
                                        f"accuracy {best['accuracy']:.4f}, compression {best['compression']:.2f}x"))
    print(f"written: {out}")
    return 0


def _compare_labels(runs: list) -> list[str]:
    """Legend names of compared studies: the study name, with its storage where names repeat."""
    from ..search.storage import describe_storage

    names = [r.name for r in runs]
    labels = [f"{r.name} ({describe_storage(r.storage_url)})" if names.count(r.name) > 1 else r.name for r in runs]
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice is not None:
        raise ValueError(f"--compare names study {twice} twice (or the plotted study itself); drop the repeat")
    return labels


@command("plot", _plot_args)
def plot(args: argparse.Namespace) -> int:
    """Front, hypervolume history and per-layer heat map of a study (PNG + SVG); --compare overlays studies."""
    run = _open(args)
    others = [_open_other(args, entry) for entry in args.compare]  # every study found before anything is drawn
    for path in write_plots(run, args.out, others):
        print(path)
    return 0


def write_plots(run, out: str | Path | None = None, others: list | tuple = ()) -> list[Path]:
    """Front, hypervolume history and per-layer heat map of ``run`` (and a comparison with the ``others``
    runs) as PNG + SVG in ``out`` (default: results/<study>/plots); returns the written files."""
    from ..results import (hypervolume_history, pareto_front, plot_compare, plot_front, plot_hypervolume,
                           plot_layer_heatmap, study_objectives, trials_frame)

    from ..search.storage import make_folder

    labels = _compare_labels([run, *others])
    df = trials_frame(run.study)
    objs = study_objectives(run.study)
    if df.empty or not (df["status"] == "completed").any():
        raise ValueError(f"study {run.name} has no finished trial yet, nothing to plot; run 'stsearch status {run.name}'")
    out = Path(out) if out else run.folder / "plots"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the images")
    make_folder(out, "--out folder")
    written = plot_front(df, objs, out / "front", title=f"{run.name}: accuracy vs compression")
    written += plot_hypervolume(hypervolume_history(df, objs), out / "hypervolume", title=f"{run.name}: hypervolume")
    front = pareto_front(df, objs)
    if len(front):
        written += plot_layer_heatmap(front, out / "layers")
    if others:
        frames = {labels[0]: df}
        for label, other_run in zip(labels[1:], others):
            frames[label] = trials_frame(other_run.study)
        written += plot_compare(frames, objs, out / "compare")
    return written
