"""Export of a study's trial to a standalone compressed model.

* :func:`select_trial`: pick a trial of a study (most accurate, knee, best at a
  compression floor, or by number), with one-line errors naming the fix;
* :func:`export_trial`: write an export folder (``plan.json``, ``trial.json``,
  ``model.safetensors``, ``metrics.json``, ``export.json``, ``program.pt2`` or
  ``program.ts``, ``MODEL_CARD.md``), optionally fine-tuned first;
* :func:`load` / :func:`load_program`: the model back from an export folder or a
  trial folder (factorized ``nn.Module``), or its torch-only traced program.
"""

from .artifact import export_trial
from .loading import EXPORT_FILE, load, load_program, read_meta
from .selection import select_trial, trial_folder

__all__ = ["select_trial", "trial_folder", "export_trial", "load", "load_program", "read_meta", "EXPORT_FILE"]
