"""The search controller: studies and their bookkeeping, Ray Tune and worker dispatch, progress."""

from .run import Claim, SearchRun, constraints_func
from .storage import default_storage_url, open_storage

__all__ = ["SearchRun", "Claim", "constraints_func", "default_storage_url", "open_storage"]
