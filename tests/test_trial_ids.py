"""Trial ids over the whole schema: every key that changes what a trial trains or records changes
its id, and every runtime-only key (RUNTIME_KEYS) does not. The keys come from the schema's
dataclasses, so a key added to bsweep/config.py is covered without editing this file; a key of a
type this file cannot vary fails until a rule for it is added.

A key missed here is a silent wrong answer: a rerun with it changed finds the old trials
"finished" and reuses them (an id without noise.cosine_at gave C6 no cosines)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from typing import Any

import pytest
from omegaconf import OmegaConf

from bsweep import config as schema
from bsweep.config import RUNTIME_KEYS, TARGET_NODES, Config, is_under
from bsweep.plan import compose_config, trial_id

# Allowed values of the string keys that validate.py checks against a list: a changed value must
# be one a user could set, not a typo the plan would refuse.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.name": schema.DATASETS,
    "data.input_norm": schema.INPUT_NORMS,
    "data.order": schema.ORDERS,
    "model.name": schema.MODELS,
    "norm.kind": schema.NORMS,
    "optim.name": schema.OPTIMIZERS,
    "schedule.name": schema.SCHEDULES,
    "device": schema.DEVICES,
    "lr_scaling": schema.LR_SCALINGS,
    "study.budget.rule": ("any", "all"),
    "perf.amp": ("auto", "on", "off"),
    "perf.channels_last": ("auto", "on", "off"),
    "perf.compile": ("on", "off"),
    "perf.fuse": ("auto", "off", "4"),
}
# The typed form of a `_target_` node (bsweep.plan.typed_targets): not keys of a composed config.
TYPED_ONLY = ("target", "kwargs")


def schema_leaves(node: type = Config, prefix: str = "") -> dict[str, Any]:
    """{dotted key: its type} for every leaf of the schema's dataclasses."""
    hints = typing.get_type_hints(node)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(schema_leaves(hint, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = hint
    return out


LEAVES = schema_leaves()


def example(hint: Any) -> Any:
    """A value of type `hint` for a key that has none (None, an empty list)."""
    return {int: 7, float: 0.5, str: "x", bool: True}[hint]


def changed(key: str, hint: Any, value: Any) -> Any:
    """A value of `key` other than `value` that the schema's type `hint` allows: a bool
    flipped, an int + 1, a float doubled, another allowed choice, a list one longer, an
    Optional swapped between None and a value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return example(inner) if value is None else None
    if hint is bool:
        return not value
    if hint is int:
        return value + 1
    if hint is float:
        return value * 2 if value else 0.5
    if hint is str:
        return next((c for c in CHOICES.get(key, ()) if c != value), f"{value}_other")
    if origin is list:
        return [*value, value[-1] if value else example(args[0])]
    if origin is dict:
        return {**value, "note": "changed"}
    raise AssertionError(f"{key}: no rule to change a {hint}; add one to `changed`")


def set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        tree = tree[p]
    assert leaf in tree, f"schema key {key} is not in the composed config"
    tree[leaf] = value


@functools.cache
def _composed_default() -> dict:
    return OmegaConf.to_container(compose_config([]), resolve=True)


def variants(key: str) -> tuple[dict, dict]:
    """(the default composed config, the same with `key` changed away from its value there)."""
    base = copy.deepcopy(_composed_default())
    *parents, leaf = key.split(".")
    if parents and parents[0] in TARGET_NODES and leaf in TYPED_ONLY:
        # a node of the user's own: `target` is its `_target_`, `kwargs` its other keys
        node = parents[0]
        own = {k: v for k, v in base[node].items() if node == "data" and k in schema.OWN_DATA_KEYS}
        base[node] = {"_target_": "my_pkg.Thing", **own}
        after = copy.deepcopy(base)
        if leaf == "target":
            after[node]["_target_"] = "my_pkg.Other"
        else:
            after[node]["size"] = 3
        return base, after
    after = copy.deepcopy(base)
    value = base
    for part in key.split("."):
        value = value[part]
    set_dotted(after, key, changed(key, LEAVES[key], value))
    return base, after


def test_the_schema_is_enumerated_whole():
    # the nested nodes are walked (a flat walk would see `noise` as one key and pass vacuously)
    assert {"noise.cosine_at", "study.budget.epochs", "perf.amp", "model.target", "tags"} <= set(LEAVES)
    assert set(LEAVES) == set(schema.flatten(dataclasses.asdict(Config())))


@pytest.mark.parametrize("key", sorted(LEAVES))
def test_a_key_changes_the_trial_id_unless_it_only_says_where_or_how_it_runs(key):
    base, after = variants(key)
    assert after != base
    if is_under(key, RUNTIME_KEYS):
        assert trial_id(after) == trial_id(base), f"{key} is runtime-only but changes the id"
    else:
        assert trial_id(after) != trial_id(base), (
            f"{key} changes what a trial trains or records but not its id: a rerun would reuse "
            f"trials trained without it")


def test_runtime_keys_are_the_reviewed_list():
    # A key in RUNTIME_KEYS is exempt from the test above: adding one must be a decision about
    # what a trial is (results equal whatever its value), made here on purpose.
    assert set(RUNTIME_KEYS) == {
        "device", "threads", "results_dir", "data.root", "data.download", "study.name",
        "study.description", "study.eval.batch_size", "study.nuisance", "study.memory_limit_gib",
        "perf", "checkpoint_seconds",
    }
