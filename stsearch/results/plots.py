"""Figures of a study: accuracy/compression front, hypervolume history, per-layer
configuration heat map of the front, and fronts of several studies compared.

Each function writes ``<stem>.png`` and ``<stem>.svg`` (a suffix on ``path`` is dropped)
and returns the written paths. Figures are drawn with the Agg canvas, without pyplot.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FuncFormatter

from ..metrics import MetricTable
from .frame import Objectives
from .pareto import default_reference, eligible_mask, hypervolume, knee_point, pareto_front, resolve_objectives

__all__ = ["FAMILY_STYLE", "plot_front", "plot_hypervolume", "plot_layer_heatmap", "plot_compare"]

#: family -> (colour, marker, filled). Classical/ST pairs share colour and marker;
#: classical is hollow, semi-tensor (ST) filled.
FAMILY_STYLE: dict[str, tuple[str, str, bool]] = {
    "dense": ("#222222", "D", True),
    "tucker": ("#1f77b4", "s", False),
    "sttu": ("#1f77b4", "s", True),
    "tt": ("#ff7f0e", "o", False),
    "stt": ("#ff7f0e", "o", True),
    "tr": ("#2ca02c", "^", False),
    "str": ("#2ca02c", "^", True),
    "mixed": ("#9467bd", "P", True),
}
_UNKNOWN_STYLE = ("#8c564b", "v", True)
_FAMILY_ORDER = list(FAMILY_STYLE)

_LABELS = MetricTable(lambda m: m.axis_label)  # live views of stsearch.metrics
_LOG = MetricTable(lambda m: True, where=lambda m: m.log)
_DPI = 150


def _save(fig: Figure, path: str | Path) -> list[Path]:
    stem = Path(path)
    if stem.suffix.lower() in (".png", ".svg", ".pdf"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    out = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    for p in out:
        fig.savefig(p, dpi=_DPI, bbox_inches="tight")
    return out


def _style(family: Any) -> tuple[str, str, bool]:
    return FAMILY_STYLE.get(str(family), _UNKNOWN_STYLE)


def _pick_axes(objs: Objectives) -> tuple[tuple[str, str], tuple[str, str]]:
    """(x objective, y objective): y is accuracy if present, x compression if present."""
    names = [n for n, _ in objs]
    y = objs[names.index("accuracy")] if "accuracy" in names else objs[0]
    rest = [o for o in objs if o[0] != y[0]]
    if not rest:
        raise ValueError("plotting a front needs two objectives")
    x = next((o for o in rest if o[0] == "compression"), rest[0])
    return x, y


def _objs(df: pd.DataFrame, objectives: Iterable[Any] | None) -> Objectives:
    if objectives is None and not df.attrs.get("objectives"):
        return [("accuracy", "maximize"), ("compression", "maximize")]
    return resolve_objectives(df, objectives)


def _yscale(name: str, frames: Sequence[pd.DataFrame]) -> float:
    """Accuracy stored as a fraction is shown in percent."""
    if name != "accuracy":
        return 1.0
    vals = np.concatenate([pd.to_numeric(f[name], errors="coerce").to_numpy(float) for f in frames if name in f])
    vals = vals[np.isfinite(vals)]
    return 100.0 if vals.size == 0 or vals.max() <= 1.0 + 1e-9 else 1.0


def _format_axis(ax: Any, which: str, name: str) -> None:
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xlabel if which == "x" else ax.set_ylabel)(_LABELS.get(name, name))
    if name in _LOG:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        fmt = (lambda v: f"{v:g}×") if name == "compression" else EngFormatter()
        axis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
        # label the 2s and 5s of each decade too: ranges here often span only one or two decades
        axis.set_minor_formatter(FuncFormatter(lambda v, _: fmt(v) if f"{v:e}"[0] in "25" else ""))


def _step(x_dir: str) -> str:
    # x maximized: the best y with at least x holds on (x_{i-1}, x_i]; minimized: on [x_i, x_{i+1}).
    return "pre" if x_dir == "maximize" else "post"


def _front_xy(df: pd.DataFrame, x: tuple[str, str], y: tuple[str, str]) -> pd.DataFrame:
    front = pareto_front(df, [y, x])
    return front.sort_values(x[0], kind="stable")


def _positive(vals: np.ndarray, name: str) -> np.ndarray:
    return vals > 0 if name in _LOG else np.isfinite(vals)


def plot_front(
    df: pd.DataFrame, objectives: Iterable[Any] | None, path: str | Path, *, title: str | None = None
) -> list[Path]:
    """Accuracy vs compression factor (log x) of one study.

    Eligible trials are coloured by family (classical hollow, semi-tensor filled,
    each pair sharing colour and marker), other trials with values (pruned, partial,
    infeasible) are faint grey crosses (on the bottom edge when below the range of the
    eligible ones), the 2-D front of the plotted pair is a step line, uniform-rank
    baselines are stars annotated with their name and the knee point is ringed (the knee of
    all the objectives, as ``stsearch pareto`` reports it).
    With other objectives the plotted pair is accuracy (or the first objective) and
    compression (or the next one).
    """
    objs = _objs(df, objectives)
    x, y = _pick_axes(objs)
    ys = _yscale(y[0], [df])
    fig = Figure(figsize=(10, 6))
    ax = fig.add_subplot(111)
    xv = pd.to_numeric(df[x[0]], errors="coerce").to_numpy(float)
    yv = pd.to_numeric(df[y[0]], errors="coerce").to_numpy(float) * ys
    has = np.isfinite(yv) & _positive(xv, x[0])
    elig = eligible_mask(df, [y, x]).to_numpy(bool) & has if not df.empty else has

    handles: list[Any] = []
    ylo, yhi = _ylim(yv[elig] if elig.any() else yv[has], log=y[0] in _LOG)
    other = has & ~elig
    if other.any():
        ox, oy = xv[other], yv[other]
        below, above = oy < ylo, oy > yhi
        inside = ~below & ~above
        ax.scatter(ox[inside], oy[inside], marker="x", s=18, c="#999999", alpha=0.5, linewidths=0.8, zorder=1)
        for sel, edge, marker in ((below, ylo, "v"), (above, yhi, "^")):
            if sel.any():
                ax.scatter(ox[sel], np.full(sel.sum(), edge), marker=marker, s=18, c="#999999", alpha=0.5,
                           clip_on=False, zorder=1)
        note = "".join(f"\n  {m} = {w} the axis range" for sel, m, w in ((below, "▼", "below"), (above, "▲", "above"))
                       if sel.any())
        handles.append(Line2D([], [], ls="", marker="x", color="#999999",
                              label=f"not eligible: pruned/partial/infeasible ({int(other.sum())})" + note))

    fams = df["family"].astype(object).where(df["family"].notna(), "unknown").to_numpy()
    present = [f for f in _FAMILY_ORDER if np.any(fams[elig] == f)] + sorted(
        {str(f) for f in fams[elig]} - set(_FAMILY_ORDER))
    for fam in present:
        sel = elig & (fams == fam)
        colour, marker, filled = _style(fam)
        ax.scatter(xv[sel], yv[sel], marker=marker, s=34, linewidths=1.2, edgecolors=colour,
                   facecolors=colour if filled else "none", alpha=0.85, zorder=3, label=f"{fam} ({int(sel.sum())})")

    labels: list[tuple[float, float, str, dict[str, Any]]] = []
    front = _front_xy(df, x, y) if elig.any() else df.iloc[0:0]
    if not front.empty:
        fx = front[x[0]].to_numpy(float)
        fy = front[y[0]].to_numpy(float) * ys
        ax.step(fx, fy, where=_step(x[1]), color="#d62728", lw=1.6, alpha=0.9, zorder=4,
                label=f"Pareto front ({len(front)})")
        # The knee of all the study's objectives, as 'stsearch pareto' and 'export --knee' report it
        # (with more than two it may lie off the plotted pair's front).
        many = len(objs) > 2
        knee = knee_point(pareto_front(df, objs), objs) if many else knee_point(front, [y, x])
        kx, ky = float(knee[x[0]]), float(knee[y[0]]) * ys
        over = f" (of all {len(objs)} objectives)" if many else ""
        ax.scatter([kx], [ky], s=320, facecolors="none", edgecolors="#d62728", linewidths=2.2, zorder=6,
                   label=f"knee{over}: trial #{int(knee['number'])}")
        labels.append((kx, ky, f"knee #{int(knee['number'])}: {_fmt(y[0], ky)}, {_fmt(x[0], kx)}",
                       dict(color="#d62728", ec="#d62728")))
    labels += _mark_baselines(ax, df, x[0], y[0], ys, has, ylo, yhi)
    _format_axis(ax, "x", x[0])
    _format_axis(ax, "y", y[0])
    ax.set_ylim(ylo, yhi)
    ax.autoscale_view(scalex=True, scaley=False)
    ax.set_xlim(ax.get_xlim())
    avoid = np.column_stack([front[x[0]].to_numpy(float), front[y[0]].to_numpy(float) * ys]) if len(front) else None
    _place_labels(ax, labels, left=x[1] == "maximize", down=y[1] == "maximize", avoid=avoid)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    n_el, n_all = int(elig.sum()), len(df)
    name = df.attrs.get("study_name")
    ax.set_title(title or f"Pareto front{f' — {name}' if name else ''}  ({n_el} eligible of {n_all} trials)")
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8, title="family (hollow: classical, filled: semi-tensor)", title_fontsize=8, frameon=False)
    return _save(fig, path)


def _ylim(vals: np.ndarray, log: bool = False) -> tuple[float, float]:
    vals = vals[np.isfinite(vals) & (vals > 0)] if log else vals[np.isfinite(vals)]
    if vals.size == 0:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = float(vals.min()), float(vals.max())
    if log:
        pad = max(0.08 * np.log10(hi / lo), 0.02)
        return lo / 10**pad, hi * 10**pad
    pad = max(0.08 * (hi - lo), 0.01 * max(abs(hi), 1.0))
    return lo - pad, hi + pad


def _fmt(name: str, v: float) -> str:
    if name == "accuracy":
        return f"{v:.1f}%" if v > 1 else f"{v:.3f}"
    if name == "compression":
        return f"{v:.1f}×"
    if name in ("macs", "params"):
        return EngFormatter(places=1)(v)
    return f"{v:.3g}"


def _mark_baselines(
    ax: Any, df: pd.DataFrame, x: str, y: str, ys: float, has: np.ndarray, ylo: float, yhi: float
) -> list[tuple[float, float, str, dict[str, Any]]]:
    """Star each baseline trial; return its label for :func:`_place_labels`."""
    if "baseline" not in df.columns:
        return []
    base = df["baseline"].notna().to_numpy() & (df["baseline"].astype(str) != "").to_numpy() & has
    if not base.any():
        return []
    out = []
    for _, r in df[base].iterrows():
        bx, by = float(r[x]), min(max(float(r[y]) * ys, ylo), yhi)
        colour, _, _ = _style(r.get("family"))
        ax.scatter([bx], [by], marker="*", s=240, c=colour, edgecolors="black", linewidths=0.9, zorder=8,
                   clip_on=False)
        out.append((bx, by, str(r["baseline"]), dict(color="black", ec="#999999", fontweight="bold")))
    ax.scatter([], [], marker="*", s=120, c="white", edgecolors="black", label="uniform-rank baseline")
    return out


def _place_labels(
    ax: Any, labels: list[tuple[float, float, str, dict[str, Any]]], *, left: bool, down: bool,
    avoid: np.ndarray | None = None,
) -> None:
    """Annotate points with boxed labels that cover neither each other nor the labelled
    markers (and, where possible, not the points in ``avoid``, an (n, 2) data array):
    each label takes the first free spot, trying the dominated side of its point first
    (``left``/``down``) and moving further out."""
    if not labels:
        return
    to_px = ax.transData.transform
    pt = ax.figure.dpi / 72.0
    frame = ax.get_window_extent()
    sx, sy = (-1 if left else 1), (-1 if down else 1)
    spots = [(sx * a, sy * b) for r in (1.0, 1.6, 2.3, 3.2, 4.4) for a, b in
             ((14 * r, 12 * r), (4 * r, 20 * r), (22 * r, 2 * r), (-14 * r, 12 * r), (14 * r, -12 * r))]

    def square(px: float, py: float, half: float) -> tuple[float, float, float, float]:
        return (px - half * pt, py - half * pt, px + half * pt, py + half * pt)

    hard = [square(*to_px((x, y)), 8) for x, y, _, _ in labels]
    soft = [square(*p, 4) for p in to_px(avoid)] if avoid is not None and len(avoid) else []

    def free(box: tuple[float, float, float, float], boxes: list[tuple[float, float, float, float]]) -> bool:
        return all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in boxes)

    for x, y, text, style in sorted(labels, key=lambda item: -to_px((item[0], item[1]))[1]):
        px, py = to_px((x, y))
        lines = text.split("\n")
        w = (max(len(line) for line in lines) * 5.0 + 8) * pt
        h = (12 * len(lines) + 4) * pt
        candidates = []
        for dx, dy in spots:
            x0 = px + dx * pt - (w if dx < 0 else 0)
            box = (x0, py + dy * pt - h / 2, x0 + w, py + dy * pt + h / 2)
            if frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1:
                candidates.append((dx, dy, box))
        best = next((c for c in candidates if free(c[2], hard + soft)), None)
        best = best or next((c for c in candidates if free(c[2], hard)), None)
        if best is None:
            dx, dy = spots[0]
            x0 = px + dx * pt - (w if dx < 0 else 0)
            best = (dx, dy, (x0, py + dy * pt - h / 2, x0 + w, py + dy * pt + h / 2))
        dx, dy, box = best
        hard.append(box)
        colour, ec = style.get("color", "black"), style.get("ec", "#999999")
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha="right" if dx < 0 else "left",
                    va="center", fontsize=8, color=colour, fontweight=style.get("fontweight", "normal"),
                    arrowprops=dict(arrowstyle="-", lw=0.7, color=ec, shrinkA=0, shrinkB=5),
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=ec, lw=0.6, alpha=0.9), zorder=9)


def plot_hypervolume(history: pd.DataFrame, path: str | Path, *, title: str | None = None) -> list[Path]:
    """Hypervolume of the eligible front against trial number (from
    :func:`~stsearch.results.pareto.hypervolume_history`), improvements marked, with the
    front size on a second axis and the reference point in the subtitle."""
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot(111)
    n = history["number"].to_numpy(int)
    hv = history["hypervolume"].to_numpy(float)
    ax.step(n, hv, where="post", color="#1f77b4", lw=1.8, label="hypervolume")
    imp = history["improved"].to_numpy(bool)
    ax.scatter(n[imp], hv[imp], s=16, color="#1f77b4", zorder=3, label=f"front improved ({int(imp.sum())})")
    ax.set_xlabel("Trial number")
    objs = history.attrs.get("objectives")
    units = " × ".join(_unit(o) for o, _ in objs) if objs else "objective units"
    ax.set_ylabel(f"Hypervolume ({units})")
    ax.grid(True, alpha=0.35)
    ax2 = ax.twinx()
    ax2.step(n, history["front_size"].to_numpy(int), where="post", color="#999999", lw=1.0, ls="--",
             label="front size")
    ax2.set_ylabel("Front size (trials)", color="#666666")
    ax2.tick_params(axis="y", colors="#666666")
    ax2.set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    if len(hv) and np.nanmax(hv) >= 1e4:
        ax.yaxis.set_major_formatter(EngFormatter())
    ref = history.attrs.get("reference")
    sub = ""
    if ref is not None and objs:
        sub = "\nreference: " + ", ".join(f"{o}={_fmt(o, r) if o in ('macs', 'params') else f'{r:g}'}"
                                         for (o, _), r in zip(objs, ref))
    ax.set_title((title or "Hypervolume of the Pareto front over trials") + sub, fontsize=11)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8, framealpha=0.9)
    return _save(fig, path)


def _unit(name: str) -> str:
    return {"accuracy": "acc", "compression": "CF", "latency_ms": "ms"}.get(name, name)


def _plan(v: Any) -> Mapping[str, Any]:
    if isinstance(v, str) and v:
        v = json.loads(v)
    return v if isinstance(v, Mapping) else {}


def _rank_value(rank: Any) -> float:
    if isinstance(rank, (list, tuple)):
        vals = [float(r) for r in rank if r is not None]
        return float(np.mean(vals)) if vals else math.nan
    return float(rank) if rank is not None else math.nan


def _rank_text(rank: Any) -> str:
    if isinstance(rank, (list, tuple)):
        vals = [int(r) for r in rank if r is not None]
        if not vals:
            return ""
        return f"r{min(vals)}" if min(vals) == max(vals) else f"r{min(vals)}-{max(vals)}"
    return f"r{int(rank)}" if rank is not None else ""


def plot_layer_heatmap(
    front_df: pd.DataFrame, path: str | Path, *, title: str | None = None, max_rows: int = 40
) -> list[Path]:
    """Per-layer configuration of the front's trials, from each trial's ``plan``: rows are
    trials (labelled with number, family, accuracy and compression), columns the planned
    layers; colour is the rank (mean of a rank list), text the family, rank and STP
    factor ``t``. Dense or unplanned layers are grey. At most ``max_rows`` rows, evenly
    chosen along the front."""
    rows = front_df
    if len(rows) > max_rows:
        rows = rows.iloc[np.linspace(0, len(rows) - 1, max_rows).round().astype(int)]
    plans = [(_plan(p).get("layers") or {}) for p in rows.get("plan", pd.Series([None] * len(rows)))]
    layers: list[str] = []
    for lp in plans:
        layers += [k for k in lp if k not in layers]
    n_r, n_c = len(rows), max(len(layers), 1)
    rank = np.full((n_r, n_c), np.nan)
    text = [["–"] * n_c for _ in range(n_r)]
    for i, lp in enumerate(plans):
        for j, name in enumerate(layers):
            cfg = lp.get(name)
            if not isinstance(cfg, Mapping):
                continue
            fam = str(cfg.get("family", "dense"))
            if fam == "dense":
                text[i][j] = "dense"
                continue
            rank[i, j] = _rank_value(cfg.get("rank"))
            t = cfg.get("t")
            text[i][j] = fam + "\n" + _rank_text(cfg.get("rank")) + (f" t{t}" if t not in (None, 1) else "")

    fig = Figure(figsize=(min(max(6.0, 0.95 * n_c + 3.5), 40.0), min(max(3.0, 0.5 * n_r + 2.2), 30.0)))
    ax = fig.add_subplot(111)
    finite = rank[np.isfinite(rank)]
    cmap = mcolors.LinearSegmentedColormap.from_list("rank", ["#f7fbff", "#6baed6", "#08306b"]).with_extremes(
        bad="#e0e0e0")
    if finite.size and finite.min() > 0 and finite.max() / finite.min() >= 4:
        norm: mcolors.Normalize = mcolors.LogNorm(finite.min(), finite.max())
    else:
        lo = float(finite.min()) if finite.size else 0.0
        norm = mcolors.Normalize(lo, float(finite.max()) if finite.size and finite.max() > lo else lo + 1.0)
    im = ax.pcolormesh(np.arange(n_c + 1) - 0.5, np.arange(n_r + 1) - 0.5, np.ma.masked_invalid(rank),
                       cmap=cmap, norm=norm, edgecolors="white", linewidth=1.2)
    ax.set_xlim(-0.5, n_c - 0.5)
    ax.set_ylim(n_r - 0.5, -0.5)
    shade = np.where(np.isfinite(rank), norm(np.where(np.isfinite(rank), rank, 1.0)), 0.0)
    for i in range(n_r):
        for j in range(n_c):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=6.5,
                    color="white" if shade[i, j] > 0.55 else "#222222")
    ax.set_xticks(range(n_c))
    ax.set_xticklabels(layers or ["(no plan)"], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n_r))
    ax.set_yticklabels([_row_label(r) for _, r in rows.iterrows()], fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel("Layer")
    ax.set_ylabel("Front trial")
    cb = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    cb.set_label("rank (mean over bonds)")
    if isinstance(norm, mcolors.LogNorm):
        ticks = [r for r in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if norm.vmin <= r <= norm.vmax]
        cb.set_ticks(ticks, labels=[str(r) for r in ticks])
        cb.ax.minorticks_off()
    more = f" ({n_r} of {len(front_df)} shown)" if len(front_df) > n_r else ""
    ax.set_title((title or "Per-layer configuration of the Pareto front") + more)
    return _save(fig, path)


def _row_label(r: pd.Series) -> str:
    parts = [f"#{int(r['number'])}"]
    if isinstance(r.get("baseline"), str) and r.get("baseline"):
        parts.append(f"[{r['baseline']}]")
    elif r.get("family") is not None:
        parts.append(str(r["family"]))
    acc = r.get("accuracy", r.get("val_acc"))
    if acc is not None and np.isfinite(acc):
        parts.append(f"{acc * 100:.1f}%" if acc <= 1 else f"{acc:.1f}%")
    cf = r.get("compression")
    if cf is not None and np.isfinite(cf):
        parts.append(f"{cf:.1f}×")
    return "  ".join(parts)


_STUDY_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def plot_compare(
    frames: Mapping[str, pd.DataFrame], objectives: Iterable[Any] | None, path: str | Path, *,
    title: str | None = None, colours: Mapping[str, str] | None = None,
) -> list[Path]:
    """Fronts of several studies on one axis (accuracy vs compression by default): each
    study's eligible trials faint, its front as a step line with markers, in its own colour
    (``colours`` maps a study's name to a matplotlib colour; others take the default cycle);
    the legend gives each front's 2-D hypervolume against one shared reference (the
    loosest of the studies' :func:`~stsearch.results.pareto.default_reference`)."""
    if not frames:
        raise ValueError("plot_compare needs at least one frame")
    first = next(iter(frames.values()))
    objs = _objs(first, objectives)
    x, y = _pick_axes(objs)
    ys = _yscale(y[0], list(frames.values()))
    refs = [default_reference(f, [y, x]) for f in frames.values() if not f.empty]
    ref = [(min if d == "maximize" else max)(r[i] for r in refs) for i, (_, d) in enumerate([y, x])] if refs else None
    fig = Figure(figsize=(10, 6))
    ax = fig.add_subplot(111)
    all_y: list[np.ndarray] = []
    for k, (name, df) in enumerate(frames.items()):
        colour = (colours or {}).get(name) or _STUDY_COLOURS[k % len(_STUDY_COLOURS)]
        elig = eligible_mask(df, [y, x]).to_numpy(bool) if not df.empty else np.zeros(0, bool)
        pts = df[elig]
        pts = pts[_positive(pts[x[0]].to_numpy(float), x[0])]
        ax.scatter(pts[x[0]], pts[y[0]] * ys, s=12, color=colour, alpha=0.18, linewidths=0, zorder=2)
        all_y.append(pts[y[0]].to_numpy(float) * ys)
        if pts.empty:
            ax.plot([], [], color=colour, label=f"{name} (no eligible trials)")
            continue
        front = _front_xy(df, x, y)
        ax.step(front[x[0]], front[y[0]] * ys, where=_step(x[1]), color=colour, lw=1.8, zorder=4)
        hv = hypervolume(front[[y[0], x[0]]].to_numpy(float), [y[1], x[1]], ref)
        ax.plot(front[x[0]], front[y[0]] * ys, ls="", marker="o", ms=5, color=colour, zorder=5,
                label=f"{name}: front {len(front)} / {int(elig.sum())} eligible, HV {hv:.4g}")
    _format_axis(ax, "x", x[0])
    _format_axis(ax, "y", y[0])
    ylo, yhi = _ylim(np.concatenate(all_y) if all_y else np.array([]), log=y[0] in _LOG)
    ax.set_ylim(ylo, yhi)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.set_title(title or f"Pareto fronts compared ({len(frames)} studies)")
    ref_txt = f"\nHV reference: {y[0]}={ref[0]:g}, {x[0]}={ref[1]:g}" if ref else ""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title="study (faint: eligible trials)" + ref_txt, title_fontsize=8)
    return _save(fig, path)
