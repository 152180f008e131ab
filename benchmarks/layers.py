"""Forward+backward time and peak memory of one factorized convolution, in the paper's shapes.

What it measures
----------------
One 3x3 convolution (stride 1, padding 1, no bias) in three shapes of the paper:

* ResNet-32, 64 -> 64 channels at 8x8 maps (its last stage) and at 32x32 maps;
* WRN-28-10, 640 -> 640 channels at 8x8 maps;

for a batch of 128 samples (``--batch``), with these layers:

* ``dense``: a plain ``nn.Conv2d``, the reference of the ratios;
* ``tucker``/``tt``/``tr`` (classical) and ``sttu``/``stt``/``str`` (semi-tensor, ``t = 2``), from
  :class:`stsearch.layers.FactorizedConv2d`, each in both forward modes: ``dense`` (rebuild the weight,
  then one convolution) and ``factorized`` (contract the input with the factors one by one);
* TensorLy-Torch's ``tltorch.FactorizedConv`` with ``factorization='tucker'`` and ``'tt'``, with
  ``implementation='reconstructed'`` and ``'factorized'``, at a rank whose parameter count is within
  ~5 % of our classical Tucker / TT layer (both counts are reported). Skipped, with a note, when
  ``tensorly-torch`` is not installed (``pip install -e '.[bench]'``).

Ranks: TT/TR use the paper's channel splits (64 = 4x4x4, 640 = 10x8x8) and the largest even rank
<= 16 that gives both TT and TR a compression factor (CF = dense weight / factor parameters) >= 10
(rank 10 for 64 channels, the paper's 16 for 640); STT/STR use the same rank with ``t = 2``. Tucker
(Tucker-2, no factor on the 3x3 mode) uses the even rank whose CF is closest (in log) to TT's among
those with CF >= 10; STTu the same rank with ``t = 2``.

One step is ``y = layer(x); y.backward(g)`` with ``x.requires_grad`` (the input gradient is part of
the cost, as inside a network) and the gradients reset to ``None`` before each step. Per row:
parameters, CF, MACs (ours from :class:`~stsearch.layers.costs.LayerCost`, dense from
``C_out*C_in*9*H*W``, TensorLy-Torch's measured with ``FlopCounterMode``), the median, 90th
percentile and minimum of ``--repeats`` timed steps after ``--warmup`` untimed ones
(``torch.cuda.synchronize`` around each on CUDA; on CPU ``torch.set_num_threads`` is set to the
cores available). The timed steps of one shape go round-robin over its rows, so that load from
other processes on a shared machine hits every row alike; ``--row-budget-s`` lets a slow row stop
early once it has ``--min-repeats`` steps (the CSV's ``repeats`` column says how many it got). The peak
memory of one step above what was allocated before it (parameters and input excluded; gradients,
activations and workspaces included), and the ratios of time and memory to the dense
``nn.Conv2d`` measured in the same run.

Peak memory: CUDA uses ``torch.cuda.max_memory_allocated``; CPU replays one step under
``torch.profiler`` with ``profile_memory=True`` and takes the maximum of its memory timeline
(``export_memory_timeline``): bytes of tensors allocated by torch's CPU allocator, the analogue of
CUDA's allocated bytes (not the process RSS, which the C allocator's caching blurs).

How to run
----------
::

    .venv/bin/python benchmarks/layers.py --device cpu --repeats 11 --warmup 1 --min-repeats 3 --row-budget-s 6
    .venv/bin/python benchmarks/layers.py --device cuda            # batch 128, 20 repeats
    .venv/bin/python benchmarks/layers.py --quick --out /tmp/smoke.csv   # smoke run: batch 4, 1 repeat, one shape

It writes ``benchmarks/results/layers-<device>.csv`` and ``.md`` (``--out`` names the CSV; the Markdown
file sits beside it) and prints "target" lines: whether, at CF >= 10, the better forward mode of each
family is no slower than dense, and whether the ST layers beat TensorLy-Torch at equal parameters.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # stsearch, without installing it

from machine import available_cores, cpu_model, load_average, report_header, sync  # noqa: E402

from stsearch.layers.factorized import FactorizedConv2d  # noqa: E402
from stsearch.layers.layout import PAPER_SPLITS  # noqa: E402
from stsearch.plan import LayerPlan  # noqa: E402

KERNEL = (3, 3)
ST_T = 2
MAX_RANK = 16
MIN_CF = 10.0
OUR_FAMILIES = ("tucker", "sttu", "tt", "stt", "tr", "str")
CLASSICAL = {"sttu": "tucker", "stt": "tt", "str": "tr"}
OUR_MODES = ("dense", "factorized")
TL_MODES = ("reconstructed", "factorized")
PARAM_TOLERANCE = 0.05

CSV_COLUMNS = (
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
)


@dataclass(frozen=True)
class Shape:
    """One convolution geometry: square ``channels -> channels`` 3x3 on ``hw x hw`` maps."""

    name: str
    channels: int
    hw: int

    @property
    def splits(self) -> tuple[int, ...]:
        return PAPER_SPLITS[self.channels]

    @property
    def dense_params(self) -> int:
        return self.channels * self.channels * KERNEL[0] * KERNEL[1]

    @property
    def dense_macs(self) -> int:
        """MACs per sample of the dense convolution: ``C_out*C_in*9*H*W``."""
        return self.dense_params * self.hw * self.hw


SHAPES: tuple[Shape, ...] = (
    Shape("resnet32-64x64-8x8", 64, 8),
    Shape("resnet32-64x64-32x32", 64, 32),
    Shape("wrn28_10-640x640-8x8", 640, 8),
)


@dataclass
class Case:
    """One layer to measure and what is known about it before running."""

    method: str
    family: str
    forward: str
    build: Callable[[torch.device], nn.Module]
    params: int
    rank: str = ""
    t: int = 1
    matched_params: int | None = None
    macs_per_sample: int | None = None
    macs_batch_fwd: int | None = None
    macs_source: str = ""
    mac_choice: str = ""  # the mode `auto` picks by weighted MAC count (our layers only)
    plain_mac_choice: str = ""  # the mode plain MAC counts would pick (weight 1)


@dataclass
class Row:
    """One measured row of the results table."""

    shape: Shape
    case: Case
    batch: int
    device: str
    times_ms: list[float]
    peak_bytes: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return percentile(self.times_ms, 50)

    @property
    def p90_ms(self) -> float:
        return percentile(self.times_ms, 90)

    @property
    def cf(self) -> float:
        return self.shape.dense_params / self.case.params


# --------------------------------------------------------------------------- helpers
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile ``q`` (0-100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def tltorch_module() -> Any | None:
    """The ``tltorch`` module, or ``None`` when TensorLy-Torch is not installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tltorch
    except ImportError:
        return None
    return tltorch


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (Kineto prints start/stop lines from C++ on every profiling run)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- ranks
def layer_plan(family: str, rank: int, t: int, shape: Shape, forward: str = "dense") -> LayerPlan:
    """Our plan for ``family``: Tucker-2 for the Tucker families, the paper's splits otherwise."""
    if CLASSICAL.get(family, family) == "tucker":
        return LayerPlan(family, rank=rank, t=t, forward=forward)
    return LayerPlan(family, rank=rank, t=t, in_modes=shape.splits, out_modes=shape.splits, forward=forward)


def our_params(family: str, rank: int, t: int, shape: Shape) -> int:
    _, spec = layer_plan(family, rank, t, shape).resolve(shape.channels, shape.channels, KERNEL, family)
    return spec.num_params()


def choose_ranks(shape: Shape) -> dict[str, int]:
    """Rank of each of our families on ``shape`` (see the module docstring for the rule)."""

    def cf(family: str, rank: int, t: int = 1) -> float:
        return shape.dense_params / our_params(family, rank, t, shape)

    even = range(2 * (MAX_RANK // 2), 1, -2)
    tt_rank = next((r for r in even if cf("tt", r) >= MIN_CF and cf("tr", r) >= MIN_CF), 2)
    target = cf("tt", tt_rank)
    tucker_cands = [r for r in range(2, shape.channels + 1, 2) if cf("tucker", r) >= MIN_CF]
    tucker_rank = min(tucker_cands, key=lambda r: abs(math.log(cf("tucker", r) / target)))
    return {
        "tucker": tucker_rank,
        "sttu": tucker_rank,
        "tt": tt_rank,
        "stt": tt_rank,
        "tr": tt_rank,
        "str": tt_rank,
    }


def tltorch_rank(factorization: str, shape: Shape, target: int) -> tuple[Any, int]:
    """TensorLy-Torch rank whose parameter count is closest to ``target``, and that count.

    Tucker: ``(R, R, 3, 3)`` (no compression of the 3x3 modes, like our Tucker-2); TT: a uniform
    rank ``R``, or ``(1, a, b, a, 1)`` when no uniform rank lands within 5 %.
    """
    c, k = shape.channels, KERNEL[0]
    if factorization == "tucker":

        def tucker(r: int) -> int:
            return r * r * k * k + 2 * c * r + 2 * k * k

        r = min(range(1, c + 1), key=lambda r: abs(tucker(r) - target))
        return (r, r, k, k), tucker(r)

    def tt(a: int, b: int) -> int:  # cores (1, C_in, a), (a, 3, b), (b, 3, a), (a, C_out, 1)
        return 2 * c * a + 2 * k * a * b

    r = min(range(1, 4 * c), key=lambda r: abs(tt(r, r) - target))
    if abs(tt(r, r) - target) <= PARAM_TOLERANCE * target:
        return r, tt(r, r)
    near = range(max(1, r // 2), 2 * r + 2)
    pairs = [(a, b) for a in near for b in near]
    a, b = min(pairs, key=lambda ab: (abs(tt(*ab) - target), abs(ab[0] - ab[1])))
    return (1, a, b, a, 1), tt(a, b)


def measured_macs(build: Callable[[torch.device], nn.Module], shape: Shape, batch: int, device: torch.device) -> tuple[int, int]:
    """(per-sample MACs, MACs of one forward over ``batch``) counted by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    module = build(device)

    def count(n: int) -> int:
        x = torch.randn(n, shape.channels, shape.hw, shape.hw, device=device)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(x)
        return counter.get_total_flops() // 2

    one, two = count(1), count(2)
    per = two - one
    return per, (one - per) + batch * per


# --------------------------------------------------------------------------- cases
def dense_case(shape: Shape, batch: int) -> Case:
    c = shape.channels

    def build(device: torch.device) -> nn.Module:
        return nn.Conv2d(c, c, KERNEL, padding=1, bias=False, device=device)

    return Case(
        method="dense",
        family="dense",
        forward="-",
        build=build,
        params=shape.dense_params,
        macs_per_sample=shape.dense_macs,
        macs_batch_fwd=batch * shape.dense_macs,
        macs_source="C_out*C_in*9*H*W",
    )


def our_case(family: str, rank: int, mode: str, shape: Shape, batch: int) -> Case:
    t = ST_T if family in CLASSICAL else 1
    plan = layer_plan(family, rank, t, shape, forward=mode)
    layout, spec = plan.resolve(shape.channels, shape.channels, KERNEL, f"{shape.name}.{family}")

    def build(device: torch.device) -> nn.Module:
        return FactorizedConv2d(layout, spec, padding=1, forward_mode=mode, device=device)

    cost = FactorizedConv2d(layout, spec, padding=1, forward_mode=mode, device="meta").cost(
        shape.hw * shape.hw, shape.hw * shape.hw
    )
    return Case(
        method=family,
        family=family,
        forward=mode,
        build=build,
        params=cost.params,
        rank=str(rank),
        t=t,
        macs_per_sample=cost.macs(mode),
        macs_batch_fwd=cost.forward_macs(mode, batch),
        macs_source="LayerCost",
        mac_choice=cost.choose(batch),
        plain_mac_choice=cost.choose(batch, weight=1.0),
    )


def tltorch_case(tl: Any, factorization: str, implementation: str, shape: Shape, target: int) -> Case:
    rank, expected = tltorch_rank(factorization, shape, target)
    c = shape.channels

    def build(device: torch.device) -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tl.FactorizedConv(
                c,
                c,
                KERNEL[0],
                order=2,
                padding=1,
                bias=False,
                rank=rank,
                factorization=factorization,
                implementation=implementation,
                device=device,
            )

    params = count_params(build(torch.device("cpu")))
    if params != expected:
        warnings.warn(f"tltorch {factorization}: {params} parameters, expected {expected} from the formula")
    return Case(
        method=f"tltorch-{factorization}",
        family=factorization,
        forward=implementation,
        build=build,
        params=params,
        rank=str(list(rank) if isinstance(rank, tuple) else rank),
        matched_params=target,
        macs_source="FlopCounterMode",
    )


def build_cases(shape: Shape, batch: int, device: torch.device, *, with_tltorch: bool = True) -> tuple[list[Case], list[str]]:
    """Every case of one shape (dense first) and notes about what was chosen or skipped."""
    ranks = choose_ranks(shape)
    cases = [dense_case(shape, batch)]
    notes = [
        f"{shape.name}: ranks "
        + ", ".join(f"{f} {ranks[f]}" + (f" (t={ST_T})" if f in CLASSICAL else "") for f in OUR_FAMILIES)
    ]
    for family in OUR_FAMILIES:
        for mode in OUR_MODES:
            cases.append(our_case(family, ranks[family], mode, shape, batch))
    tl = tltorch_module() if with_tltorch else None
    if tl is None:
        notes.append(f"{shape.name}: TensorLy-Torch rows skipped (tensorly-torch not installed)")
        return cases, notes
    for factorization in ("tucker", "tt"):
        target = our_params(factorization, ranks[factorization], 1, shape)
        for implementation in TL_MODES:
            case = tltorch_case(tl, factorization, implementation, shape, target)
            case.macs_per_sample, case.macs_batch_fwd = measured_macs(case.build, shape, batch, device)
            cases.append(case)
        notes.append(
            f"{shape.name}: tltorch-{factorization} rank {case.rank}: {case.params} params vs ours {target} "
            f"({100 * (case.params - target) / target:+.1f} %)"
        )
    return cases, notes


# --------------------------------------------------------------------------- measuring
@dataclass
class Lane:
    """A built layer of one case, its step, and the times measured so far."""

    case: Case
    module: nn.Module
    step: Callable[[], None]
    reset: Callable[[], None]
    times_ms: list[float] = field(default_factory=list)


def make_lane(case: Case, x: torch.Tensor, grad_out: torch.Tensor) -> Lane:
    """Build ``case`` on the device of ``x``; its step is ``y = layer(x); y.backward(grad_out)``."""
    module = case.build(x.device).train()
    params = list(module.parameters())

    def reset() -> None:
        for p in params:
            p.grad = None
        x.grad = None

    def step() -> None:
        reset()
        module(x).backward(grad_out)

    return Lane(case, module, step, reset)


def time_step(step: Callable[[], None], device: torch.device) -> float:
    """Wall time of one step in ms (synchronized on CUDA)."""
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return 1000.0 * (time.perf_counter() - start)


def peak_memory(step: Callable[[], None], device: torch.device, reset: Callable[[], None]) -> float:
    """Peak bytes of one step above what was allocated before it (see the module docstring)."""
    reset()  # free last step's gradients before measuring, so the step starts from the same state
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        peak = float(torch.cuda.max_memory_allocated(device) - base)
        reset()
        return peak
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings(), quiet_stderr():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            step()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "timeline.json"
            prof.export_memory_timeline(str(path), device="cpu")
            _, sizes = json.loads(path.read_text())
    reset()
    if not sizes:
        return math.nan
    totals = [sum(s) for s in sizes]
    return float(max(totals) - totals[0])


def measure_shape(
    shape: Shape,
    cases: Sequence[Case],
    batch: int,
    device: torch.device,
    *,
    warmup: int,
    repeats: int,
    min_repeats: int,
    row_budget_s: float,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Time every case of ``shape``, interleaved, then measure each one's peak memory.

    The timed steps go round-robin over the cases (one step of each per round), so that a change
    of load on a shared machine hits every row alike. A row stops taking steps once it has
    ``min_repeats`` of them and has spent ``row_budget_s`` seconds in timed steps.
    """
    x = torch.randn(batch, shape.channels, shape.hw, shape.hw, device=device, requires_grad=True)
    grad_out = torch.randn(batch, shape.channels, shape.hw, shape.hw, device=device)
    lanes = [make_lane(case, x, grad_out) for case in cases]
    for lane in lanes:
        for _ in range(warmup):
            lane.step()
        lane.reset()
    for r in range(repeats):
        for lane in lanes:
            if r >= min_repeats and sum(lane.times_ms) >= 1000.0 * row_budget_s:
                continue
            lane.times_ms.append(time_step(lane.step, device))
            lane.reset()
        log(f"{shape.name}: round {r + 1}/{repeats} done")
    rows = [Row(shape, lane.case, batch, str(device), lane.times_ms, peak_memory(lane.step, device, lane.reset)) for lane in lanes]
    del lanes, x, grad_out
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


# --------------------------------------------------------------------------- output
def row_dict(row: Row, dense: Row) -> dict[str, Any]:
    c = row.case
    return {
        "shape": row.shape.name,
        "c_in": row.shape.channels,
        "c_out": row.shape.channels,
        "hw": row.shape.hw,
        "batch": row.batch,
        "method": c.method,
        "family": c.family,
        "forward": c.forward,
        "rank": c.rank,
        "t": c.t,
        "params": c.params,
        "matched_params": "" if c.matched_params is None else c.matched_params,
        "cf": round(row.cf, 2),
        "macs_per_sample": c.macs_per_sample,
        "macs_batch_fwd": c.macs_batch_fwd,
        "macs_source": c.macs_source,
        "median_ms": round(row.median_ms, 3),
        "p90_ms": round(row.p90_ms, 3),
        "min_ms": round(min(row.times_ms), 3),
        "peak_mem_mb": round(row.peak_bytes / 2**20, 3),
        "time_vs_dense": round(row.median_ms / dense.median_ms, 3),
        "mem_vs_dense": round(row.peak_bytes / dense.peak_bytes, 3) if dense.peak_bytes > 0 else math.nan,
        "repeats": len(row.times_ms),
        "device": row.device,
        "mac_choice": c.mac_choice,
        "plain_mac_choice": c.plain_mac_choice,
    }


def by_min(mine: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]], *, strict: bool = False) -> str:
    """The same verdict from the fastest single step over all modes of each side (a check against load noise)."""
    a = min(r["min_ms"] for r in mine)
    b = min(r["min_ms"] for r in other)
    ok = a < b if strict else a <= b
    return f" (by min step: {a:.2f} vs {b:.2f} ms -> {'PASS' if ok else 'FAIL'})"


def targets(records: list[dict[str, Any]]) -> list[str]:
    """The "target" lines: best mode vs dense at CF >= 10; ST layers vs TensorLy-Torch.

    Verdicts use the median of the better mode (by median); each line also gives the verdict from
    the fastest single step over both modes, as a check against noise from a loaded machine.
    """
    lines: list[str] = []
    shapes = list(dict.fromkeys(r["shape"] for r in records))
    n_pass = n_all = 0
    for name in shapes:
        rows = [r for r in records if r["shape"] == name]
        dense = next(r for r in rows if r["method"] == "dense")
        for family in OUR_FAMILIES:
            fam = [r for r in rows if r["method"] == family]
            if not fam or fam[0]["cf"] < MIN_CF:
                continue
            best = min(fam, key=lambda r: r["median_ms"])
            ok = best["median_ms"] <= dense["median_ms"]
            n_pass, n_all = n_pass + ok, n_all + 1
            lines.append(
                f"target [best mode no slower than dense at CF>={MIN_CF:g}] {name} {family} (CF {best['cf']:.1f}x): "
                f"{best['forward']} {best['median_ms']:.2f} ms vs dense {dense['median_ms']:.2f} ms "
                f"({best['time_vs_dense']:.2f}x) -> {'PASS' if ok else 'FAIL'}{by_min(fam, [dense])}"
            )
    lines.append(f"target [best mode no slower than dense] summary: {n_pass}/{n_all} pass")
    n_pass = n_all = 0
    for name in shapes:
        rows = [r for r in records if r["shape"] == name]
        for ours, theirs in (("sttu", "tltorch-tucker"), ("stt", "tltorch-tt")):
            mine = [r for r in rows if r["method"] == ours]
            other = [r for r in rows if r["method"] == theirs]
            if not mine or not other:
                continue
            a = min(mine, key=lambda r: r["median_ms"])
            b = min(other, key=lambda r: r["median_ms"])
            ok = a["median_ms"] < b["median_ms"]
            n_pass, n_all = n_pass + ok, n_all + 1
            lines.append(
                f"target [ST beats TensorLy-Torch at equal params] {name} {ours} {a['forward']} "
                f"({a['params']} params, CF {a['cf']:.1f}x) {a['median_ms']:.2f} ms vs {theirs} {b['forward']} "
                f"({b['params']} params = classical {b['matched_params']}) {b['median_ms']:.2f} ms "
                f"-> {'PASS' if ok else 'FAIL'}{by_min(mine, other, strict=True)}"
            )
    if n_all:
        lines.append(f"target [ST beats TensorLy-Torch] summary: {n_pass}/{n_all} pass")
    else:
        lines.append("target [ST beats TensorLy-Torch]: not measured (tensorly-torch not installed)")
    return lines + st_vs_classical_lines(records) + mac_rule_lines(records)


def st_vs_classical_lines(records: list[dict[str, Any]]) -> list[str]:
    """Each semi-tensor family against its classical twin at equal rank: time and MAC ratios per mode."""
    lines: list[str] = []
    n_pass = n_all = 0
    for name in dict.fromkeys(r["shape"] for r in records):
        rows = [r for r in records if r["shape"] == name]
        for st, classic in CLASSICAL.items():
            mine = {r["forward"]: r for r in rows if r["method"] == st}
            theirs = {r["forward"]: r for r in rows if r["method"] == classic}
            if not mine or not theirs:
                continue
            parts = []
            for mode in OUR_MODES:
                a, b = mine[mode], theirs[mode]
                parts.append(f"{mode} {a['median_ms'] / b['median_ms']:.2f}x time, {a['macs_per_sample'] / b['macs_per_sample']:.2f}x MACs")
            best_a = min(mine.values(), key=lambda r: r["median_ms"])
            best_b = min(theirs.values(), key=lambda r: r["median_ms"])
            ok = best_a["median_ms"] <= best_b["median_ms"]
            n_pass, n_all = n_pass + ok, n_all + 1
            lines.append(
                f"target [ST no slower than classical at equal rank] {name} {st} vs {classic} (rank {best_a['rank']}, "
                f"t={best_a['t']}): {'; '.join(parts)}; best {best_a['forward']} {best_a['median_ms']:.2f} ms vs "
                f"{best_b['forward']} {best_b['median_ms']:.2f} ms -> {'PASS' if ok else 'FAIL'}"
                f"{by_min(list(mine.values()), list(theirs.values()))}"
            )
    lines.append(f"target [ST no slower than classical at equal rank] summary: {n_pass}/{n_all} pass")
    return lines


def mac_rule_lines(records: list[dict[str, Any]]) -> list[str]:
    """Whether ``auto``'s weighted MAC rule (and plain MAC counts) pick the faster mode (by median)."""
    from stsearch.layers.costs import FACTORIZED_MAC_WEIGHT

    lines: list[str] = []
    right = {"mac_choice": 0, "plain_mac_choice": 0}
    n_all = 0
    for name in dict.fromkeys(r["shape"] for r in records):
        for family in OUR_FAMILIES:
            fam = {r["forward"]: r for r in records if r["shape"] == name and r["method"] == family}
            if set(fam) != set(OUR_MODES):
                continue
            fast = min(fam.values(), key=lambda r: r["median_ms"])
            n_all += 1
            verdicts = []
            for key, label in (("mac_choice", "auto"), ("plain_mac_choice", "plain MACs")):
                pick = fam[OUR_MODES[0]][key]
                ok = pick == fast["forward"]
                right[key] += ok
                slower = fam[pick]["median_ms"] / fast["median_ms"]
                verdicts.append(f"{label} picks {pick}" + ("" if ok else f" ({slower:.2f}x slower)"))
            lines.append(f"mac rule {name} {family}: faster is {fast['forward']} ({fast['median_ms']:.2f} ms); "
                         + "; ".join(verdicts))
    if n_all:
        lines.append(
            f"mac rule summary: auto (factorized MACs weighted {FACTORIZED_MAC_WEIGHT:g}x) picks the faster mode in "
            f"{right['mac_choice']}/{n_all} rows, plain MAC counts in {right['plain_mac_choice']}/{n_all} "
            "(TrainConfig(tune_forward=True) measures instead)"
        )
    return lines


def machine_info(device: torch.device, threads: int) -> list[str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores, {available_cores()} available",
        f"- device: {device} ({name})"
        + (f"; torch.set_num_threads({threads})" if device.type == "cpu" else "; cudnn.benchmark=True"),
        f"- python {platform.python_version()}, torch {torch.__version__}, tensorly {package_version('tensorly')}, "
        f"tensorly-torch {package_version('tensorly-torch')}",
        f"- load average at start (1/5/15 min): {load_average()} (other processes share the CPU when it is high)",
    ]


def write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(records)


def write_markdown(
    path: Path,
    records: list[dict[str, Any]],
    *,
    command: str,
    info: list[str],
    notes: list[str],
    target_lines: list[str],
    memory_method: str,
    batch: int,
    warmup: int,
    repeats: int,
    timing_rule: str,
    elapsed_s: float,
) -> None:
    out = [
        *report_header(f"Layer benchmark: forward+backward of one 3x3 conv ({records[0]['device'] if records else ''})", command),
        *info,
        f"- batch {batch}; {warmup} warm-up step(s) per row, then up to {repeats} timed steps per row, {timing_rule}; "
        f"wall time of the run {elapsed_s:.0f} s; load average at the end: {load_average()}",
        f"- peak memory: {memory_method}",
        "- CF = dense weight / factor parameters; MACs per sample of the forward pass; ratios are to the dense "
        "`nn.Conv2d` of the same shape in this run",
        *[f"- {n}" for n in notes],
        "",
        "| shape | method | forward | rank | t | params | CF | MACs/sample | median ms | p90 ms | min ms | n "
        "| peak MiB | time / dense | mem / dense |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        params = f"{r['params']:,}" + (f" (ours {r['matched_params']:,})" if r["matched_params"] != "" else "")
        macs = f"{r['macs_per_sample']:,}" if r["macs_per_sample"] is not None else ""
        out.append(
            f"| {r['shape']} | {r['method']} | {r['forward']} | {r['rank']} | {r['t']} | {params} | {r['cf']:.1f} | "
            f"{macs} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['min_ms']:.2f} | {r['repeats']} | {r['peak_mem_mb']:.1f} | "
            f"{r['time_vs_dense']:.2f} | {r['mem_vs_dense']:.2f} |"
        )
    out += ["", "## Targets", "", "```", *target_lines, "```", ""]
    path.write_text("\n".join(out))


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128; 4 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per row (default 20; 1 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 0 with --quick)")
    parser.add_argument(
        "--row-budget-s",
        type=float,
        default=math.inf,
        help="a row stops after this many seconds of timed steps once it has --min-repeats (default: no limit)",
    )
    parser.add_argument("--min-repeats", type=int, default=3, help="timed steps every row gets (default 3)")
    parser.add_argument(
        "--shapes", nargs="+", choices=[s.name for s in SHAPES], default=None, help="subset of shapes (default all)"
    )
    parser.add_argument("--no-tltorch", action="store_true", help="skip the TensorLy-Torch rows")
    parser.add_argument("--out", type=Path, default=None, help="CSV path (default benchmarks/results/layers-<device>.csv)")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 4, 1 repeat, no warm-up, first shape")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    args.batch = args.batch or (4 if args.quick else 128)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 3)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    names = args.shapes or ([SHAPES[0].name] if args.quick else [s.name for s in SHAPES])
    args.shape_list = [s for s in SHAPES if s.name in names]
    args.out = args.out or Path(__file__).resolve().parent / "results" / f"layers-{args.device}.csv"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    command = "python " + shlex.join(sys.argv if argv is None else ["benchmarks/layers.py", *argv])
    threads = available_cores()
    if device.type == "cpu":
        torch.set_num_threads(threads)
        memory_method = (
            "CPU: torch.profiler(profile_memory=True) memory timeline of one extra step, max minus the bytes "
            "allocated at its start (torch's CPU allocator only, not RSS)"
        )
    else:
        torch.backends.cudnn.benchmark = True
        memory_method = "CUDA: torch.cuda.max_memory_allocated over one extra step minus memory_allocated before it"
    info = machine_info(device, threads)
    timing_rule = "interleaved round-robin over the rows of a shape" + (
        f", a row stopping once it has {min(args.min_repeats, args.repeats)} steps and {args.row_budget_s:g} s of them"
        if math.isfinite(args.row_budget_s)
        else ""
    )
    print(f"$ {command}")
    for line in info:
        print(line)
    if device.type == "cpu":
        print(f"CPU run: torch.set_num_threads({threads}) (the cores available to this process)")
    print(f"peak memory: {memory_method}")
    print(f"timing: {args.warmup} warm-up step(s), up to {args.repeats} timed steps per row, {timing_rule}", flush=True)

    start = time.perf_counter()
    torch.manual_seed(0)
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    for shape in args.shape_list:
        cases, shape_notes = build_cases(shape, args.batch, device, with_tltorch=not args.no_tltorch)
        notes += shape_notes
        for note in shape_notes:
            print(note, flush=True)
        rows = measure_shape(
            shape,
            cases,
            args.batch,
            device,
            warmup=args.warmup,
            repeats=args.repeats,
            min_repeats=min(args.min_repeats, args.repeats),
            row_budget_s=args.row_budget_s,
            log=lambda msg: print(msg, flush=True),
        )
        for row in rows:
            rec = row_dict(row, rows[0])
            records.append(rec)
            c = row.case
            print(
                f"{shape.name:22s} {c.method:15s} {c.forward:13s} params {c.params:>8,d} CF {rec['cf']:8.1f}x "
                f"median {rec['median_ms']:9.2f} ms p90 {rec['p90_ms']:9.2f} ms min {rec['min_ms']:9.2f} ms "
                f"(n={rec['repeats']}) peak {rec['peak_mem_mb']:8.1f} MiB "
                f"time/dense {rec['time_vs_dense']:6.2f} mem/dense {rec['mem_vs_dense']:6.2f}",
                flush=True,
            )
    elapsed = time.perf_counter() - start
    target_lines = targets(records)
    for line in target_lines:
        print(line)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(args.out, records)
    md = args.out.with_suffix(".md")
    write_markdown(
        md,
        records,
        command=command,
        info=info,
        notes=notes,
        target_lines=target_lines,
        memory_method=memory_method,
        batch=args.batch,
        warmup=args.warmup,
        repeats=args.repeats,
        timing_rule=timing_rule,
        elapsed_s=elapsed,
    )
    print(f"wrote {args.out} and {md} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
