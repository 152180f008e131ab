"""Live progress of a search: a bar over trained trials with the best results so far."""

from __future__ import annotations

import sys
from typing import Any

from optuna.trial import FrozenTrial

from .run import SearchRun

__all__ = ["SearchProgress"]


class SearchProgress:
    """A tqdm bar (trained / target) whose postfix shows the best accuracy, best CF and front size."""

    def __init__(self, run: SearchRun, *, enabled: bool = True, frame_every: float = 10.0) -> None:
        from tqdm.auto import tqdm

        self.run = run
        counts = run.counts()
        self.bar = tqdm(total=run.target, initial=counts["trained"], desc=f"search {run.name}", unit="trial",
                        disable=not enabled, file=sys.stderr, dynamic_ncols=True)
        self.best_acc: float | None = None
        self.best_cf: float | None = None
        self.infeasible = counts["infeasible"]
        self.frame_every = frame_every

    def __call__(self, trial: FrozenTrial) -> None:
        attrs = trial.user_attrs
        if attrs.get("status") == "infeasible":
            self.infeasible += 1
        else:
            self.bar.update(1)
        if attrs.get("status") == "completed" and attrs.get("full_budget"):
            acc, cf = attrs.get("val_acc"), attrs.get("compression")
            if acc is not None:
                self.best_acc = max(acc, self.best_acc or 0.0)
            if cf is not None:
                self.best_cf = max(cf, self.best_cf or 0.0)
        post: dict[str, Any] = {"last": f"#{trial.number} {attrs.get('family', '?')} {attrs.get('status')}"}
        if self.best_acc is not None:
            post["best_acc"] = f"{self.best_acc:.3f}"
        if self.best_cf is not None:
            post["best_cf"] = f"{self.best_cf:.1f}x"
        post["infeasible"] = self.infeasible
        self.bar.set_postfix(post, refresh=True)
        self.run.write_frame(every=self.frame_every)

    def close(self) -> None:
        self.bar.close()
