"""Models and datasets of the user's own, named by `_target_` (Hydra's convention): finding the
object, and checking its keyword arguments against its signature. No torch import here: plans
and validation use it; `bsweep.train.models` and `bsweep.train.data` build and call what it finds.

bsweep passes a model what it owns, by these names, only where the signature accepts them
(`MODEL_GIVES`): the input shape of one sample, the number of classes, and a factory of the
study's normalization layer. A data target gets `seed` (the config's data_seed) where it
accepts one. Every other keyword comes from the config node.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

# What bsweep gives a model target, where its signature takes it by name.
MODEL_GIVES = ("input_shape", "num_classes", "norm_layer")
# What bsweep gives a data target, where its signature takes it by name: data.data_seed.
DATA_GIVES = ("seed",)


class TargetError(ValueError):
    """A `_target_` that cannot be used as given; the message says what is wrong."""


def locate(path: str, key: str) -> Callable[..., Any]:
    """The callable at import path `path` ("pkg.module.Name"), the config key `key` it came
    from named in the error when it cannot be imported or called. The current directory is on
    the import path, as for `python -m`."""
    module_name, _, attr = str(path).rpartition(".")
    if not module_name:
        raise TargetError(f"{key}={path!r} is not an import path; write it as package.module.Name")
    _current_dir_importable()
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise TargetError(f"{key}={path}: cannot import {module_name!r} ({e}); is its package "
                          f"installed, or its folder the current directory or on PYTHONPATH?") from None
    except Exception as e:  # the module itself raised while importing
        raise TargetError(f"{key}={path}: importing {module_name!r} raised {type(e).__name__}: {e}") from None
    if not hasattr(obj, attr):
        public = sorted(n for n, v in vars(obj).items()  # defined there, not imported
                        if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module_name)
        raise TargetError(f"{key}={path}: {module_name!r} has no {attr!r}"
                          + (f"; callables there: {', '.join(public[:12])}" if public else ""))
    obj = getattr(obj, attr)
    if not callable(obj):
        raise TargetError(f"{key}={path} is a {type(obj).__name__}, not a class or function")
    return obj


def _current_dir_importable() -> None:
    """Put the current directory on sys.path (where `python -m` would have it): a model module
    next to the user's configs imports without an install. Hydra's `chdir` is off in bsweep, and
    worker processes start in the same directory."""
    import os
    import sys

    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def target_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The config's keyword arguments for a target as plain Python values (lists, dicts), any
    nested `_target_` node among them built by `hydra.utils.instantiate` (an activation,
    `{_target_: torch.nn.GELU}`), as Hydra builds a target's arguments."""
    if not kwargs:
        return {}
    from hydra.utils import instantiate

    return instantiate({**kwargs, "_convert_": "all"})


def parameters(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """(the keyword names `fn` takes, whether it takes **kwargs)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: take anything
        return set(), True
    names = {p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def required(fn: Callable[..., Any]) -> set[str]:
    """The parameters of `fn` without a default (what a call must pass)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return set()
    return {p.name for p in sig.parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether `fn` takes keyword `name` (by name, or through **kwargs)."""
    names, var = parameters(fn)
    return name in names or var


def given(fn: Callable[..., Any], offered: dict[str, Any]) -> dict[str, Any]:
    """The items of `offered` (what bsweep owns) that `fn`'s signature names."""
    names, _ = parameters(fn)
    return {k: v for k, v in offered.items() if k in names}


def kwargs_problems(fn: Callable[..., Any], kwargs: dict[str, Any], node: str, path: str,
                    gives: tuple[str, ...]) -> list[str]:
    """What is wrong with calling `fn` with the config's `kwargs` (plus what bsweep gives):
    a keyword it does not take, bsweep's own name set in the config, a required one missing."""
    names, var = parameters(fn)
    out = []
    for key in kwargs:
        if key in gives:
            out.append(f"{node}.{key}: bsweep passes {key} to {path} itself; remove it from the config")
        elif key not in names and not var:
            out.append(f"{node}.{key} is not an argument of {path}; it takes: "
                       f"{', '.join(sorted(names - set(gives))) or 'none'}")
    missing = required(fn) - set(kwargs) - set(gives)
    if missing:
        out.append(f"{path} needs {', '.join(sorted(missing))}: set "
                   + ", ".join(f"{node}.{m}=..." for m in sorted(missing)))
    return out
