"""Space keys of how trials train: ``trainer``, ``pretrained``, ``init``, ``distill``.

``trainer``     ``package.module:callable`` or a name from :func:`stsearch.train.custom.register_trainer`:
                ``fit(model, train_dataset, val_dataset, context) -> dict`` replaces the built-in trainer
``pretrained``  state dict (.pt/.pth/.safetensors) of the dense model; checked against the model, made absolute;
                or ``train``: the study trains the dense model first (:mod:`stsearch.search.pretrain`)
``pretrained_train``  train-config overrides of that dense training, e.g. ``{epochs: 30}`` (``pretrained: train``)
``init``        ``random`` | ``decompose`` (factors from the pretrained weights; needs ``pretrained``); default
                ``decompose`` with ``pretrained: train``, else ``random``
``distill``     ``{alpha, temperature}``: distil from the pretrained dense model (needs ``pretrained``)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

__all__ = ["check_training", "TRAINING_KEYS"]

TRAINING_KEYS = ("trainer", "pretrained", "pretrained_train", "init", "distill")


def check_training(space: Any, data: Mapping[str, Any]) -> None:
    """Validate the training keys of ``data`` and set them on ``space`` (distill goes into ``space.train``)."""
    from ..plugins import UserCodeError
    from .types import _fail

    trainer = data.get("trainer")
    if trainer is not None:
        from ..train.custom import resolve_trainer

        if not isinstance(trainer, str) or not trainer:
            raise _fail(("trainer",), f"expected package.module:callable or a registered name, got {trainer!r}; "
                                      f"e.g. trainer: mytrain:fit")
        try:
            resolve_trainer(trainer, space.python_path)
        except UserCodeError as err:
            raise _fail(("trainer",), f"{err}; check the module is on python_path (or listed in plugins)") from None
    pretrained = data.get("pretrained")
    if pretrained is not None and pretrained != "train":
        pretrained = _check_pretrained(space, pretrained, _fail)
    space.pretrained_train = _check_pretrained_train(space, data.get("pretrained_train"), pretrained, _fail)
    init = data.get("init", "decompose" if pretrained == "train" else "random")
    if init not in ("random", "decompose"):
        raise _fail(("init",), f"expected random or decompose, got {init!r}; e.g. init: decompose")
    if init == "decompose" and pretrained is None:
        raise _fail(("init",), "decompose needs the dense weights; add pretrained: PATH (a state dict of the model)")
    distill = data.get("distill")
    if distill is not None:
        if pretrained is None:
            raise _fail(("distill",), "distillation needs a teacher; add pretrained: PATH (the dense model's state dict)")
        if not isinstance(distill, Mapping) or set(distill) - {"alpha", "temperature"}:
            raise _fail(("distill",), f"expected {{alpha, temperature}}, got {distill!r}; e.g. distill: {{alpha: 0.5, temperature: 4}}")
        alpha, temp = distill.get("alpha", 0.5), distill.get("temperature", 4.0)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
            raise _fail(("distill", "alpha"), f"expected a number in (0, 1], got {alpha!r}; e.g. alpha: 0.5")
        if isinstance(temp, bool) or not isinstance(temp, (int, float)) or temp <= 0:
            raise _fail(("distill", "temperature"), f"expected a positive number, got {temp!r}; e.g. temperature: 4")
        distill = {"alpha": float(alpha), "temperature": float(temp)}
        space.train["distill_alpha"], space.train["distill_temperature"] = distill["alpha"], distill["temperature"]
    space.trainer, space.pretrained, space.init, space.distill = trainer, pretrained, init, distill


def _check_pretrained_train(space: Any, raw: Any, pretrained: Any, _fail: Any) -> dict[str, Any] | None:
    """``pretrained_train``: train-config overrides of the study's dense training (``pretrained: train``)."""
    if raw is None:
        return None
    if pretrained != "train":
        raise _fail(("pretrained_train",), "it sets how the study trains its dense model; add pretrained: train, "
                                           "or remove it")
    if not isinstance(raw, Mapping):
        raise _fail(("pretrained_train",), f"expected a mapping of train keys, got {raw!r}; e.g. {{epochs: 30}}")
    from ..train import TrainConfig

    try:
        TrainConfig.from_dict({**dict(space.train), **dict(raw)})
    except (TypeError, ValueError) as err:
        raise _fail(("pretrained_train",), str(err).strip().splitlines()[0]) from None
    return dict(raw)


def _check_pretrained(space: Any, value: Any, _fail: Any) -> str:
    from ..trial import load_state_dict_file

    if not isinstance(value, str) or not value:
        raise _fail(("pretrained",), f"expected the path of a state dict or train, got {value!r}; e.g. "
                                     f"pretrained: dense.pt")
    path = Path(value).expanduser()
    if not path.is_absolute() and space.source:
        path = Path(space.source).parent / path
    path = path.resolve()
    if not path.is_file():
        raise _fail(("pretrained",), f"file {path} does not exist; save the dense model with "
                                     f"torch.save(model.state_dict(), PATH) (or safetensors)")
    try:
        state = load_state_dict_file(path)
    except Exception as err:  # noqa: BLE001
        raise _fail(("pretrained",), f"cannot read {path} ({type(err).__name__}: {str(err)[:120]}); "
                                     f"pass a .pt/.pth/.safetensors state dict") from None
    want = space._meta.state_dict()
    for key, tensor in want.items():
        if key not in state:
            raise _fail(("pretrained",), f"{path.name} lacks parameter {key!r} of the dense {space.model}; "
                                         f"pass a state dict of the same model")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise _fail(("pretrained",), f"{path.name}: parameter {key!r} has shape {tuple(state[key].shape)}, the "
                                         f"model's is {tuple(tensor.shape)}; pass a state dict of the same model")
    extra = sorted(set(state) - set(want))
    if extra:
        raise _fail(("pretrained",), f"{path.name} has parameter {extra[0]!r} the dense {space.model} lacks; "
                                     f"pass a state dict of the same model")
    return str(path)
