"""``stsearch train``: run one trial from the command line and print its metrics as JSON."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .registry import command
from .plugin_args import add_plugin_arg, import_cli_plugins

_TRAIN_FLAGS = {  # CLI flag -> TrainConfig key
    "epochs": "epochs", "max_steps": "max_steps", "max_seconds": "max_seconds", "batch_size": "batch_size",
    "lr": "lr", "optimizer": "optimizer", "seed": "seed", "device": "device", "num_threads": "num_threads",
    "distill_alpha": "distill_alpha",
}


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", help="search space (YAML path or name in search_spaces/): model, dataset and budget defaults")
    p.add_argument("--config", help="JSON (inline or a file): flat search params as a study stores them, "
                                    "or a trial spec {model, dataset, plan, train, ...}")
    p.add_argument("--plan", help="plan file (JSON/YAML) to train instead of --config params")
    p.add_argument("--model", help="registered model (overrides the space)")
    p.add_argument("--dataset", help="dataset name (overrides the space)")
    p.add_argument("--data-dir", help="folder holding CIFAR data")
    p.add_argument("--init", choices=["random", "decompose"], help="factor initialisation (decompose needs --pretrained)")
    p.add_argument("--pretrained", help="dense state dict of the model for warm start / distillation")
    p.add_argument("--out", help="trial folder (default results/train/<time>)")
    p.add_argument("--no-progress", action="store_true")
    add_plugin_arg(p)
    for flag, key in _TRAIN_FLAGS.items():
        typ = {"optimizer": str, "device": str}.get(key, float if key in ("epochs", "lr", "max_seconds", "distill_alpha") else int)
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=typ, help=f"TrainConfig.{key}")
    p.add_argument("--tune-forward", action=argparse.BooleanOptionalAction, default=None,
                   help="time both forward modes of each factorized layer first and keep the faster "
                        "(TrainConfig.tune_forward; default: on for CUDA only)")
    p.add_argument("--compile", nargs="?", const=True, default=None, metavar="MODE",
                   help="run training and evaluation through torch.compile, in MODE if given (default, "
                        "reduce-overhead, max-autotune, max-autotune-no-cudagraphs; TrainConfig.compile; "
                        "default: off)")


_FORMS = ('a trial spec {"plan": {"layers": {...}}, "train": {...}, ...} or flat search params as a study '
          'stores them {"layer1.0.conv1:family": "tt", ...} (with --space)')


def _read_json(text: str) -> dict[str, Any]:
    """The JSON object of ``--config``: inline JSON or the path of a JSON file."""
    inline = text.lstrip().startswith(("{", "["))
    path = Path(text)
    is_file = not inline and path.is_file()
    source = f"--config file {path}" if is_file else "--config"
    if is_file:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"{source} is not UTF-8 text; pass a JSON file or inline JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if not inline and not is_file:
            raise FileNotFoundError(f"--config {text!r} is neither inline JSON nor an existing file; "
                                    f"give {_FORMS}") from None
        raise ValueError(f"{source}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a JSON object, got {type(data).__name__} {data!r:.60}; give {_FORMS}")
    return data


def build_spec(args: argparse.Namespace):
    """The TrialSpec the arguments describe."""
    from ..plan import NetworkPlan
    from ..trial import TrialSpec

    plugins = import_cli_plugins(args)  # before the space: it may name what they register
    space = None
    if args.space:
        from ..space import load_space

        space = load_space(args.space)
    config = _read_json(args.config) if args.config else {}
    spec: dict[str, Any] = {}
    if space is not None:
        spec.update(model=space.model, dataset=space.dataset, data_dir=space.data_dir,
                    model_kwargs=dict(space.model_kwargs), train=dict(space.train),
                    plugins=list(space.plugins), python_path=list(space.python_path), transforms=space.transforms)
    spec_keys = set(TrialSpec.__dataclass_fields__)
    if "plan" in config and not isinstance(config["plan"], dict):
        raise ValueError(f"--config: plan must be a mapping {{\"layers\": {{<glob>: <layer plan>}}}} (as in a plan "
                         f"file), got {config['plan']!r}; to train a plan file pass --plan PATH")
    for key, example in (("train", '{"epochs": 2}'), ("model_kwargs", '{"num_classes": 10}')):
        if key in config and not isinstance(config[key], dict):
            raise ValueError(f"--config: {key} must be a mapping, got {config[key]!r}; e.g. \"{key}\": {example}")
    if "model" in config or "plan" in config:  # a trial spec
        spec.update(config)
    elif config and all(":" in str(k) for k in config):  # search params
        if space is None:
            raise ValueError("--config holds search params; also pass --space to decode them")
        try:
            spec["plan"] = space.plan_from_params(config).to_dict()
        except ValueError as err:
            raise ValueError(f"--config: {err}") from None
    elif config:
        unknown = sorted(str(k) for k in config if k not in spec_keys)
        if unknown:
            raise ValueError(f"--config: key(s) {unknown} are neither trial-spec keys nor search params; give {_FORMS}")
        if not args.plan:
            raise ValueError(f"--config has no plan and no search params; give {_FORMS}, or pass --plan PATH")
        spec.update(config)
    if args.plan:
        plan = NetworkPlan.load(args.plan)
        model = args.model or spec.get("model")
        if plan.model and model and plan.model != model:
            raise ValueError(f"plan {args.plan} is for model {plan.model!r}, not {model!r}; pass a plan for {model!r}")
        spec["plan"] = plan.to_dict()
    for key in ("model", "dataset", "data_dir", "init", "pretrained"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if space is not None and space.data_meta is not None and args.dataset is None and args.data_dir is None:
        spec.setdefault("num_classes", int(space.data_meta[0]))  # loading the trial folder then needs no data
        spec.setdefault("input_shape", [int(v) for v in space.data_meta[1]])
    train = dict(spec.get("train") or {})
    for flag, key in _TRAIN_FLAGS.items():
        if getattr(args, flag) is not None:
            train[key] = getattr(args, flag)
    if args.tune_forward is not None:
        train["tune_forward"] = args.tune_forward
    if args.compile is not None:
        train["compile"] = args.compile
    spec["train"] = train
    if "model" not in spec or "dataset" not in spec:
        raise ValueError("no model/dataset: pass --space, or --model and --dataset")
    _record_user_code(spec, plugins)
    trial = TrialSpec.from_dict(spec)
    cfg = trial.train_config()
    if cfg.distill_alpha > 0 and not trial.pretrained:
        raise ValueError(f"distill_alpha {cfg.distill_alpha:g} distills from a pretrained dense model; pass "
                         f"--pretrained PATH (a state dict of {trial.model}) or --distill-alpha 0")
    from ..train.trainer import resolve_device

    resolve_device(cfg.device)  # a device this machine lacks is refused here, not mid-run
    return trial


def _record_user_code(spec: dict[str, Any], plugins: list[str]) -> None:
    """Add ``--plugin`` modules to the spec's plugins, and their folders and an import-path model's to its
    ``python_path`` (so ``stsearch.load`` of the trial folder finds them from anywhere)."""
    from ..models.reference import model_factory, parse_model_ref
    from ..space.user import record_roots

    spec["plugins"] = list(dict.fromkeys([*spec.get("plugins", []), *plugins]))
    paths = list(spec.get("python_path", []))
    model_factory(parse_model_ref(spec["model"]), tuple(paths))  # imports an import-path model's module
    spec["python_path"] = record_roots(spec["plugins"], spec["model"], paths)


@command("train", _args)
def run(args: argparse.Namespace) -> int:
    """Train one configuration (a trial) and print its metrics as JSON."""
    from ..trial import jsonable, run_trial

    spec = build_spec(args)
    out = Path(args.out) if args.out else Path("results") / "train" / time.strftime("%Y%m%d-%H%M%S")
    metrics = run_trial(spec, workdir=out, progress=not args.no_progress)
    metrics["trial_dir"] = str(out)
    ordered = {k: v for k, v in metrics.items() if k != "history"} | {"history": metrics["history"]}
    print(json.dumps(jsonable(ordered), indent=2, allow_nan=False))  # strict JSON: NaN/inf become null
    return 0 if metrics["status"] != "failed" else 1
