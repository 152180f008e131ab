"""User code: plugin modules and ``package.module:attribute`` import paths.

A plugin is a module imported for its side effects (``register_model``,
``register_dataset``). An import path names an object in a module. Both may live
next to the user's working directory, outside any installed package: the folder a
module was imported from (its *root*) is recorded so that another process (a Ray
trial, ``stsearch worker``, ``stsearch.load``) can put it on ``sys.path`` first.
This is the only module that imports user code by name.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["UserCodeError", "is_import_path", "import_object", "import_plugins", "module_root", "add_paths",
           "user_roots"]

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class UserCodeError(ValueError):
    """A plugin or import path that cannot be imported; the message says what is missing and the fix."""


def is_import_path(text: str) -> bool:
    """Whether ``text`` reads as ``package.module:attribute`` (dotted names on both sides of one colon)."""
    module, sep, attr = str(text).partition(":")
    return bool(sep) and bool(_DOTTED.match(module)) and bool(_DOTTED.match(attr))


def add_paths(paths: Iterable[str]) -> None:
    """Put each existing folder of ``paths`` at the front of ``sys.path`` (once), and the current
    folder at its end: a console script, unlike ``python -m``, does not search it."""
    for path in reversed(list(paths)):
        if path and os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _import_module(name: str, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and name.startswith(err.name):  # the named module itself (or a parent) is missing
            raise UserCodeError(f"{what}: no module named {err.name!r} (searched the current folder and sys.path); "
                                f"check the spelling, or run from the folder that holds {err.name.split('.')[0]}.py "
                                f"or add it to PYTHONPATH") from None
        raise UserCodeError(f"{what}: importing {name} failed: {err}; install {err.name!r} or fix the import") from None
    except Exception as err:  # noqa: BLE001  (any error in user code is reported as one line)
        raise UserCodeError(f"{what}: importing {name} raised {type(err).__name__}: {_first_line(err)}; "
                            f"fix the module") from None


def import_object(path: str, what: str = "import path", paths: Sequence[str] = ()) -> Any:
    """The object named by ``package.module:attribute`` (the attribute may be dotted)."""
    if not is_import_path(path):
        raise UserCodeError(f"{what} {path!r} is not an import path; write package.module:callable")
    add_paths(paths)
    module_name, _, attr = path.partition(":")
    obj = _import_module(module_name, f"{what} {path!r}")
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))[:10]
            raise UserCodeError(f"{what} {path!r}: module {module_name} has no attribute {part!r}; "
                                f"defined there: {', '.join(public) or 'nothing public'}")
        obj = getattr(obj, part)
    return obj


def import_plugins(names: Iterable[str], paths: Sequence[str] = (), what: str = "plugin") -> list[Any]:
    """Import each plugin module (for what it registers); returns the modules."""
    add_paths(paths)
    out = []
    for name in names:
        if not isinstance(name, str) or not _DOTTED.match(name):
            raise UserCodeError(f"{what} {name!r} is not a module name; write package.module (no .py, no path)")
        out.append(_import_module(name, f"{what} {name!r}"))
    return out


def _system_dirs() -> set[Path]:
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return {Path(p).resolve() for k in keys if (p := sysconfig.get_paths().get(k))}


def module_root(module: Any) -> str | None:
    """The folder a user module was imported from (the one holding its top-level package), or
    ``None`` for a built-in, installed or standard-library module (every process finds those)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    root = Path(file).resolve().parent
    for _ in range(module.__name__.count(".") + (1 if Path(file).name == "__init__.py" else 0)):
        root = root.parent
    system = _system_dirs()
    if any(root == d or d in root.parents for d in system) or "site-packages" in root.parts:
        return None
    return str(root)


def user_roots(modules: Iterable[str]) -> list[str]:
    """The roots (see :func:`module_root`) of the already imported ``modules``, without repeats."""
    out: list[str] = []
    for name in modules:
        root = module_root(sys.modules.get(name))
        if root is not None and root not in out:
            out.append(root)
    return out


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
