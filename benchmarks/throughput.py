"""Training throughput on CIFAR-shaped batches: dense vs the paper's compressed models, MAC rule vs tuned modes.

What it measures
----------------
Images per second of full training steps (forward, cross-entropy, backward, SGD step with momentum
and weight decay) on batches shaped like CIFAR-10 (``--batch`` x 3 x 32 x 32, 10 classes). The pixel
values are random: CIFAR-10 itself is not needed (nor downloadable here) and the speed of these
models does not depend on the values. Each ``--plans`` entry is a model and a uniform plan:

* ``resnet32:dense`` — the dense model;
* ``resnet32:tt:14:1`` — every conv of the three stages TT rank 14 (the paper's TT-ResNet), and
  likewise ``stt:14:2``, ``tr:10:1``, ``str:10:2``; ``wrn28_10:tr:16:1`` / ``wrn28_10:str:16:2`` are the
  paper's TR/STR-WRN (a YAML plan file may be given instead).

Every compressed model runs three times: ``macs`` (each ``auto`` layer picks its forward mode by
plain MAC count), ``auto`` (the default rule: factor-by-factor MACs weighted
:data:`~stsearch.layers.costs.FACTORIZED_MAC_WEIGHT`) and ``tuned`` (both modes of each layer timed
on its real input first, the faster kept: :func:`stsearch.layers.tune_forward_modes`, what
``TrainConfig(tune_forward=True)`` does; the time it takes is reported). Device settings follow the trainer's defaults: on CUDA bf16 autocast,
channels_last and ``cudnn.benchmark``; on CPU float32 with ``torch.set_num_threads`` = the cores
available. Per row: ``--warmup`` untimed steps, then ``--steps`` timed ones (``torch.cuda.synchronize``
around each on CUDA); the median step gives images/s. Rows alternate configurations step by step
within a round so that load from other processes hits all alike.

How to run
----------
::

    .venv/bin/python benchmarks/throughput.py --device cpu            # ResNet-32 plans, under a minute on 2 cores
    .venv/bin/python benchmarks/throughput.py --device cpu --inference --batch 1 --steps 50 --warmup 5
    .venv/bin/python benchmarks/throughput.py --device cuda --plans resnet32:dense resnet32:tt:14:1 \\
        resnet32:stt:14:2 wrn28_10:dense wrn28_10:tr:16:1 wrn28_10:str:16:2

``--modes`` keeps some of ``macs auto tuned``. ``--compile [MODE]`` adds a ``torch.compile`` twin
of every row (what ``TrainConfig(compile=...)`` does), interleaved with the eager rows; the first
warm-up step compiles and its time is reported as ``compile_s`` (cold: the run uses a fresh
``TORCHINDUCTOR_CACHE_DIR`` unless one is set), and ``vs_eager`` compares the two.

``--inference --programs`` adds, per plan, the ``torch.export`` program that ``stsearch export`` writes
(``program = folded``: the rebuilt weights of the layers running their dense mode are constants) and,
for compressed plans, the one written with ``--no-fold-weights`` (``factorized``: weights rebuilt per
call).

``--inference`` times forward passes in eval mode without autograd instead (tuned modes from
``tune_forward_modes(training=False)``: the ``dense`` mode then reuses its cached weight), e.g.
the latency of an exported model at batch 1. It writes
``benchmarks/results/throughput-<device>[-inference][-compiled].csv`` and ``.md`` (``--out`` names the CSV).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from machine import available_cores, cpu_model, load_average, report_header, sync, versions  # noqa: E402

from stsearch.compress import compress  # noqa: E402
from stsearch.export.program import write_program  # noqa: E402
from stsearch.layers import apply_forward_modes, forward_modes, tune_forward_modes  # noqa: E402
from stsearch.layers.costs import FACTORIZED_MAC_WEIGHT  # noqa: E402
from stsearch.layers.tuning import factorized_layers  # noqa: E402
from stsearch.models import create_model  # noqa: E402
from stsearch.plan import LayerPlan, NetworkPlan  # noqa: E402
from stsearch.summary import summarize  # noqa: E402
from stsearch.train.metrics import autocast  # noqa: E402

DEFAULT_PLANS = ("resnet32:dense", "resnet32:tt:14:1", "resnet32:stt:14:2", "resnet32:tr:10:1", "resnet32:str:10:2")
INPUT = (3, 32, 32)
CLASSES = 10
MODE_RULES = ("macs", "auto", "tuned")
CSV_COLUMNS = ("plan", "model", "modes", "compile", "compression", "params", "images_per_s", "median_step_ms",
               "min_step_ms", "steps", "layers", "factorized_layers", "tune_s", "compile_s", "vs_dense", "vs_macs",
               "vs_eager", "program", "program_mib", "device", "batch")


@dataclass
class Config:
    """One row: a model with a plan, and how its forward modes are chosen."""

    label: str
    model: str
    plan: NetworkPlan | None
    modes: str  # "-" (dense), "macs", "auto" or "tuned"
    compile: str | None = None  # torch.compile mode, None for eager
    program: str | None = None  # exported program: "factorized" or "folded" weights; None for the module
    program_mib: float | None = None  # its file size
    net: nn.Module | None = None
    opt: torch.optim.Optimizer | None = None
    times: list[float] = field(default_factory=list)
    tune_s: float | None = None
    compile_s: float | None = None
    chosen: dict[str, str] = field(default_factory=dict)


def parse_plan(entry: str) -> tuple[str, NetworkPlan | None, str]:
    """``model:dense``, ``model:family:rank:t`` or a plan file -> (model, plan, label)."""
    path = Path(entry)
    if path.suffix in (".yaml", ".yml", ".json") and path.exists():
        plan = NetworkPlan.load(path)
        if not plan.model:
            raise SystemExit(f"throughput: plan file {entry} names no model; add 'model: resnet32' to it")
        return plan.model, plan, path.stem
    parts = entry.split(":")
    if len(parts) == 2 and parts[1] == "dense":
        return parts[0], None, entry
    if len(parts) != 4:
        raise SystemExit(f"throughput: bad plan {entry!r}; use model:dense, model:family:rank:t or a plan file")
    model, family, rank, t = parts
    layer = LayerPlan(family, rank=int(rank), t=int(t))
    return model, NetworkPlan.uniform(["layer*"], layer, model=model), entry


def make_step(cfg: Config, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None,
              inference: bool = False) -> Callable[[], None]:
    assert cfg.net is not None and cfg.opt is not None
    net, opt = cfg.net, cfg.opt
    if cfg.compile is not None:
        net = torch.compile(net, mode=cfg.compile)
    if inference:

        def forward() -> None:
            with torch.no_grad(), autocast(x.device, amp):
                net(x)

        return forward

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(x.device, amp):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    return step


def build(cfg: Config, device: torch.device, channels_last: bool, amp: torch.dtype | None, x: torch.Tensor,
          inference: bool = False) -> None:
    torch.manual_seed(0)
    net = create_model(cfg.model, num_classes=CLASSES)
    if cfg.plan is not None:
        net = compress(net, cfg.plan)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    with torch.no_grad():  # one probe pass sets each layer's input size, which auto's choice depends on
        net.eval()(x[:1])
    net.train(not inference)
    if cfg.modes == "macs":  # plain MAC counts
        apply_forward_modes(net, {name: layer.cost().choose(layer.batch_hint, weight=1.0)
                                  for name, layer in factorized_layers(net).items()})
    if cfg.modes == "tuned":
        t0 = time.perf_counter()
        tune_forward_modes(net, x, training=not inference, context=lambda: autocast(device, amp))
        cfg.tune_s = time.perf_counter() - t0
    cfg.chosen = forward_modes(net)
    if cfg.program is not None:  # what `stsearch export [--no-fold-weights]` writes, loaded with torch alone
        with tempfile.TemporaryDirectory() as tmp:
            info = write_program(net, INPUT, Path(tmp), fold=cfg.program == "folded", batch=x.shape[0])
            if info.file != "program.pt2":
                raise SystemExit(f"throughput: torch.export failed for {cfg.label}: {info.export_error or info.error}")
            net = torch.export.load(str(Path(tmp) / info.file)).module().to(device)
            cfg.program_mib = (Path(tmp) / info.file).stat().st_size / 2**20
        if info.folded is not None:  # the program's own choice: measured for inference, then folded
            cfg.chosen = {name: "dense" if name in info.folded else "factorized" for name in cfg.chosen}
    cfg.net = net
    cfg.opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def timed(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of ``step``, the device synchronized before and after."""
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(available_cores())
    amp = torch.bfloat16 if cuda else None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, *INPUT, generator=g).to(device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (args.batch,), generator=g).to(device)
    configs: list[Config] = []
    for entry in args.plans:
        model, plan, label = parse_plan(entry)
        for modes in (("-",) if plan is None else args.modes):
            for mode in (None, args.compile) if args.compile else (None,):
                configs.append(Config(label, model, plan, modes, compile=mode))
        if args.programs:
            for kind in ("exported",) if plan is None else ("factorized", "folded"):
                configs.append(Config(label, model, plan, "-" if plan is None else "auto", program=kind))
    for cfg in configs:
        what = ", compiled" if cfg.compile else f", {cfg.program} program" if cfg.program else ""
        print(f"building {cfg.label} ({cfg.modes}{what})", flush=True)
        build(cfg, device, cuda, amp, x, args.inference)
    steps = [make_step(c, x, y, amp, args.inference) for c in configs]
    for w in range(args.warmup):
        for cfg, step in zip(configs, steps):
            seconds = timed(step, device)
            if w == 0 and cfg.compile is not None:
                cfg.compile_s = seconds
                print(f"compiled {cfg.label} ({cfg.modes}) in {seconds:.1f} s", flush=True)
    for i in range(args.steps):
        for cfg, step in zip(configs, steps):
            cfg.times.append(timed(step, device))
        print(f"round {i + 1}/{args.steps}: " + ", ".join(f"{c.label}/{c.modes}{'/' + c.program if c.program else ''} "
                                                          f"{c.times[-1] * 1e3:.1f} ms" for c in configs),
              flush=True)
    return records(configs, device, args.batch)


def records(configs: Sequence[Config], device: torch.device, batch: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    dense = {(c.model, c.compile, c.program is not None): statistics.median(c.times) for c in configs if c.plan is None}
    macs = {(c.label, c.compile): statistics.median(c.times) for c in configs if c.modes == "macs" and not c.program}
    eager = {(c.label, c.modes): statistics.median(c.times) for c in configs if c.compile is None and not c.program}
    summaries: dict[str, Any] = {}  # one per plan: its modes, compile and program twins share it
    for c in configs:
        med = statistics.median(c.times)
        kind = (c.model, c.compile, c.program is not None)
        if c.label not in summaries:
            summaries[c.label] = summarize(c.model, c.plan or NetworkPlan(layers={}, model=c.model),
                                           input_shape=INPUT, num_classes=CLASSES)
        s = summaries[c.label]
        fact = sum(1 for m in c.chosen.values() if m == "factorized")
        out.append({
            "plan": c.label, "model": c.model, "modes": c.modes, "compile": c.compile or "-",
            "compression": round(s.compression, 2),
            "params": s.params, "images_per_s": round(batch / med, 1), "median_step_ms": round(med * 1e3, 2),
            "min_step_ms": round(min(c.times) * 1e3, 2), "steps": len(c.times),
            "layers": len(c.chosen), "factorized_layers": fact,
            "tune_s": None if c.tune_s is None else round(c.tune_s, 2),
            "compile_s": None if c.compile_s is None else round(c.compile_s, 1),
            "vs_dense": round(dense[kind] / med, 3) if kind in dense else None,
            "vs_macs": round(macs[c.label, c.compile] / med, 3)
            if c.modes in ("auto", "tuned") and not c.program and (c.label, c.compile) in macs else None,
            "vs_eager": round(eager[c.label, c.modes] / med, 3) if c.compile is not None else None,
            "program": c.program or "-",
            "program_mib": None if c.program_mib is None else round(c.program_mib, 2),
            "device": str(device), "batch": batch,
        })
    return out


def write(path: Path, rows: list[dict[str, Any]], args: argparse.Namespace, command: str, wall: float, load0: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {cpu_model()}, {available_cores()} cores"
    what = "Inference" if args.inference else "Training"
    lines = report_header(f"{what} throughput on CIFAR-shaped batches ({device.type})", command)
    lines += [
        f"- device: {name}; {versions()}",
        f"- batch {args.batch} x {INPUT}, {CLASSES} classes, random pixels; "
        + ("forward passes in eval mode without autograd (a rebuilt weight is cached); " if args.inference
           else "SGD step included; ")
        + ("bf16 autocast, channels_last, cudnn.benchmark" if device.type == "cuda" else "float32"),
        f"- {args.warmup} warm-up step(s), then {args.steps} timed steps per row, rows interleaved; wall time {wall:.0f} s",
        f"- load average at start {load0}, at the end {load_average()}",
        "- modes: `macs` = each auto layer picks its forward mode by plain MAC count; `auto` = the default rule "
        f"(factor-by-factor MACs weighted {FACTORIZED_MAC_WEIGHT:g}x); `tuned` = both modes timed per layer, "
        "the faster kept (`tune_s` is that timing); `factorized_layers` = layers running factor by factor",
        "- program: `folded` = the torch.export program `stsearch export` writes (rebuilt weights of the layers "
        "running their dense mode are constants), `factorized` = with `--no-fold-weights` (weights rebuilt per call); "
        "`exported` = the dense model's program; `-` = the module itself; program MiB = its file size",
        "- torch.compile: " + (f"each row also compiled, mode {args.compile!r} (compile s = the first warm-up step, "
                               f"inductor cache {args.cache_note}; vs dense compares with the dense row of the same "
                               "kind)" if args.compile else "off (eager)"),
        "",
        "| plan | modes | compile | program | program MiB | CF | images/s | median step ms | min step ms | factorized layers | tune s | compile s "
        "| vs dense | vs macs | vs eager |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['plan']} | {r['modes']} | {r['compile']} | {r['program']} | "
            f"{r['program_mib'] if r['program_mib'] is not None else '-'} | {r['compression']:.1f} | {r['images_per_s']:.0f} | {r['median_step_ms']:.1f} | "
            f"{r['min_step_ms']:.1f} | {r['factorized_layers']}/{r['layers']} | {r['tune_s'] if r['tune_s'] is not None else '-'} | "
            f"{r['compile_s'] if r['compile_s'] is not None else '-'} | "
            f"{r['vs_dense'] if r['vs_dense'] is not None else '-'} | {r['vs_macs'] if r['vs_macs'] is not None else '-'} | "
            f"{r['vs_eager'] if r['vs_eager'] is not None else '-'} |"
        )
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--plans", nargs="+", default=list(DEFAULT_PLANS),
                        help="model:dense, model:family:rank:t or plan files (default: ResNet-32 dense, TT/STT r14, TR/STR r10)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per row first (default 2)")
    parser.add_argument("--modes", nargs="+", choices=MODE_RULES, default=list(MODE_RULES),
                        help="forward-mode rules to run for each compressed plan (default: all three)")
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                        help="add a torch.compile twin of every row (in MODE; default 'default'); needs --warmup >= 1")
    parser.add_argument("--programs", action="store_true",
                        help="with --inference: add the exported torch.export programs (factorized and folded weights)")
    parser.add_argument("--inference", action="store_true",
                        help="time forward passes without autograd (eval mode) instead of training steps; "
                             "tuned modes then come from tune_forward_modes(training=False)")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV path (default benchmarks/results/throughput-<device>[-inference][-compiled].csv)")
    args = parser.parse_args(argv)
    if args.batch < (1 if args.inference else 2) or args.steps < 1 or args.warmup < 0:
        parser.error("--batch must be >= 2 (>= 1 with --inference), --steps >= 1 and --warmup >= 0")
    if args.programs and (not args.inference or args.compile):
        parser.error("--programs needs --inference and no --compile: exported programs are timed as they are")
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup >= 1: the first warm-up step compiles")
    args.modes = [m for m in MODE_RULES if m in args.modes]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("throughput: --device cuda but CUDA is not available; use --device cpu", file=sys.stderr)
        return 2
    command = "python benchmarks/throughput.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    suffix = ("-inference" if args.inference else "") + ("-compiled" if args.compile else "") + (
        "-programs" if args.programs else "")
    out = args.out or ROOT / "benchmarks" / "results" / f"throughput-{device.type}{suffix}.csv"
    load0 = load_average()
    fresh_cache = None
    if args.compile and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # compile times from a cold cache
        fresh_cache = os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="stsearch-inductor-")
    args.cache_note = "cold (a fresh TORCHINDUCTOR_CACHE_DIR)" if fresh_cache else "TORCHINDUCTOR_CACHE_DIR as set"
    t0 = time.perf_counter()
    try:
        rows = run(args)
    finally:
        if fresh_cache:
            shutil.rmtree(fresh_cache, ignore_errors=True)
    write(out, rows, args, command.strip(), time.perf_counter() - t0, load0)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
