"""A plan's models and datasets of the user's own, tried once before any training: the data
loads and has the right types, the model builds, takes a batch and gives one logit per class.
A mistake there is then one clear error and exit 2 (`ConfigError`) instead of every trial
failing alone. Only plans with a `_target_` come here (it imports torch and the user's code).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import torch
import torch.nn.functional as F

from bsweep.config import Config
from bsweep.train.data import DatasetError, TensorData
from bsweep.train.models import ModelError, make_model
from bsweep.train.data import data_for
from bsweep.targets import TargetError
from bsweep.validate import ConfigError


def check_targets(configs: list[Config]) -> None:
    """Load each distinct dataset and build each distinct model of `configs` that involves a
    `_target_`, on the CPU; raise ConfigError saying every problem found."""
    found: list[str] = []
    datasets: dict[str, TensorData | None] = {}
    tried: set[str] = set()
    for cfg in configs:
        if cfg.model.target is None and cfg.data.target is None:
            continue
        dkey = json.dumps(asdict(cfg.data), sort_keys=True, default=str)
        if dkey not in datasets:
            datasets[dkey] = None
            try:
                datasets[dkey] = data_for(cfg.data, torch.device("cpu"))  # a trial here reuses it
            except (DatasetError, TargetError) as e:
                found.append(str(e))
            except Exception as e:  # the user's function raised: say which and what
                found.append(f"data._target_={cfg.data.target or cfg.data.name}: loading raised "
                             f"{type(e).__name__}: {e}")
        data = datasets[dkey]
        if data is not None and not 1 <= cfg.batch_size <= data.n_train:
            problem = (f"batch_size={cfg.batch_size} must be between 1 and the training-set size "
                       f"{data.n_train} of data._target_={cfg.data.target}")
            if problem not in found:
                found.append(problem)
        mkey = json.dumps([dkey, asdict(cfg.model), asdict(cfg.norm)], sort_keys=True, default=str)
        if data is None or mkey in tried:
            continue
        tried.add(mkey)
        problem = model_problem(cfg, data)
        if problem and problem not in found:
            found.append(problem)
    if found:
        raise ConfigError("\n".join(found))


def model_problem(cfg: Config, data: TensorData) -> str | None:
    """What is wrong with the trial's model on its data, tried on two training samples (one
    forward in training mode, the loss, one backward), or None."""
    name = f"model._target_={cfg.model.target}" if cfg.model.target else f"model={cfg.model.name}"
    try:
        torch.manual_seed(cfg.seed)
        model = make_model(data.input_shape, data.n_classes, cfg.model, cfg.norm)
    except (ModelError, TargetError) as e:
        return str(e)
    except Exception as e:
        return f"{name}: building it raised {type(e).__name__}: {e}"
    if not any(p.requires_grad for p in model.parameters()):
        return f"{name}: the model has no trainable parameters"
    x, y = data.x_train[:2], data.y_train[:2]
    try:
        out = model(x)
    except Exception as e:
        return (f"{name}: a batch of inputs of shape {tuple(x.shape)} (batch, {', '.join(map(str, data.input_shape))}) "
                f"raised {type(e).__name__}: {e}")
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, data.n_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return (f"{name}: for a batch of 2 it returned {shape}; bsweep needs logits of shape "
                f"(batch, {data.n_classes}): one per class of data={cfg.data.target or cfg.data.name} "
                f"(take num_classes as an argument to get it)")
    try:
        F.cross_entropy(out, y).backward()
    except Exception as e:
        return f"{name}: the loss's backward pass raised {type(e).__name__}: {e}"
    return None
