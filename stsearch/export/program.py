"""A model as a torch-only program: ``torch.export`` (dynamic batch) or, failing that, TorchScript."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .loading import PROGRAM_FILES, jit_load

__all__ = ["ProgramInfo", "write_program"]

TRACE_BATCH = 2  # example batch of the trace; 0 and 1 would be specialised by torch.export
CHECK_BATCH = 3  # a different batch size the saved program must reproduce
TOLERANCE = 1e-5


@dataclass
class ProgramInfo:
    """What :func:`write_program` wrote: file name, format, and why ``torch.export`` was not used."""

    file: str | None
    format: str | None
    dynamic_batch: bool
    export_error: str | None = None
    error: str | None = None
    folded: list[str] | None = None  # layers holding their rebuilt weight in the program (None: fold=False)


def _check(program: nn.Module, model: nn.Module, input_shape: tuple[int, ...], dynamic: bool) -> None:
    """Raise when the saved program does not reproduce ``model`` (on a batch other than the trace's)."""
    batch = CHECK_BATCH if dynamic else TRACE_BATCH
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = model(x), program(x)
    if got.shape != want.shape or not torch.allclose(got, want, atol=TOLERANCE, rtol=TOLERANCE):
        raise RuntimeError(f"the saved program differs from the model by {(got - want).abs().max().item():.3g}")


def _torch_export(model: nn.Module, x: torch.Tensor, path: Path) -> bool:
    """``torch.export`` with a dynamic batch dimension (static if that fails); returns whether dynamic."""
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        dynamic = True
    except Exception:  # noqa: BLE001  (some models specialise the batch: keep a static program)
        program = torch.export.export(model, (x,))
        dynamic = False
    torch.export.save(program, str(path))
    return dynamic


def _torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, deprecation of TorchScript
        traced = torch.jit.trace(model, (x,), check_trace=False)
        torch.jit.save(traced, str(path))


def write_program(
    model: nn.Module, input_shape: tuple[int, ...], folder: Path, *, fold: bool = True, batch: int = 1
) -> ProgramInfo:
    """Trace ``model`` (a CPU copy, eval mode, no grad) on one example input and save it in ``folder``.

    With ``fold`` (the default) each ``auto`` layer's mode is measured for inference at ``batch``
    and the layers that end in the ``dense`` mode are traced as plain layers holding their rebuilt
    weights (:func:`stsearch.compress.fold_for_inference`): no rebuild per call, their dense weights
    on disk; ``fold=False`` keeps every factor. Either way the program is checked against the
    unfolded model.

    ``program.pt2`` (``torch.export.save``, batch dimension dynamic when it
    can be) is preferred; if exporting fails, or the saved program does not
    match the model, ``program.ts`` (``torch.jit.trace``). The other program
    file, left by an earlier export, is removed. Never raises for a model that
    cannot be traced: the reason is in the result.
    """
    from ..compress import fold_for_inference

    ref = copy.deepcopy(model).to("cpu").eval()
    x = torch.randn(TRACE_BATCH, *input_shape, generator=torch.Generator().manual_seed(0))
    traced, folded = fold_for_inference(ref, input_shape, batch=batch) if fold else (ref, None)
    for name in PROGRAM_FILES:
        (folder / name).unlink(missing_ok=True)
    pt2, ts = folder / "program.pt2", folder / "program.ts"
    export_error = None
    with torch.no_grad():
        try:
            dynamic = _torch_export(copy.deepcopy(traced), x, pt2)
            _check(torch.export.load(str(pt2)).module(), ref, input_shape, dynamic)
            return ProgramInfo(file=pt2.name, format=PROGRAM_FILES[pt2.name], dynamic_batch=dynamic, folded=folded)
        except Exception as err:  # noqa: BLE001
            pt2.unlink(missing_ok=True)
            export_error = _one_line(err)
        try:
            _torchscript(copy.deepcopy(traced), x, ts)
            scripted = jit_load(ts)
            try:
                _check(scripted, ref, input_shape, True)
                dynamic = True
            except Exception:  # noqa: BLE001  (shapes baked in by the trace: valid at the traced batch only)
                _check(scripted, ref, input_shape, False)
                dynamic = False
            return ProgramInfo(file=ts.name, format=PROGRAM_FILES[ts.name], dynamic_batch=dynamic,
                               export_error=export_error, folded=folded)
        except Exception as err:  # noqa: BLE001
            ts.unlink(missing_ok=True)
            return ProgramInfo(file=None, format=None, dynamic_batch=False, export_error=export_error,
                               error=_one_line(err))


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]
