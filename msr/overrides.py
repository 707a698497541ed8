"""Compose and validate a command's config before Hydra runs it, with one-line errors.

Hydra reports composition errors over several lines (and OmegaConf adds its own details);
here each becomes a single line that names the key, the value and what is allowed.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import NamedTuple

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from msr.config import to_object
from msr.errors import UserError

MAX_CHECKED_JOBS = 256


class Checked(NamedTuple):
    jobs: list  # the validated configs of the jobs checked
    hydra_mode: object  # hydra.mode as the configs set it (None unless one does): Hydra.get_mode's answer


def check_overrides(conf_dir: Path, config_name: str, overrides: list[str], multirun: bool) -> Checked:
    """Raise UserError unless every job these overrides describe composes and validates."""
    check_run_dir(overrides)
    jobs, modes = [], []
    for job in jobs_to_check(overrides, multirun):
        cfg, mode = compose_job(conf_dir, config_name, job)
        jobs.append(to_object(cfg))
        check_device(jobs[-1])
        modes.append(mode)
    return Checked(jobs, modes[0] if modes else None)


def check_run_dir(overrides: list[str]) -> None:
    """Refuse a hydra.run.dir that holds a run already (unless the run is being resumed there)
    or that cannot be made, before Hydra writes its config there."""
    resuming = any(o.startswith("resume=") for o in overrides)
    folder = "outputs"
    for override in overrides:
        key, _, value = override.partition("=")
        if key == "hydra.run.dir" and "${" not in value:
            folder = value
            if (Path(value) / "metrics.json").exists() and not resuming:
                raise UserError(f"hydra.run.dir={value} already holds a run; give this one its own folder")
    existing = next(p for p in (Path(folder).absolute(), *Path(folder).absolute().parents) if p.exists())
    if not existing.is_dir():
        shown = os.path.relpath(existing) if not Path(folder).is_absolute() else existing
        where = f"hydra.run.dir={folder}" if folder != "outputs" else "cannot make run folders under outputs"
        raise UserError(f"{where}: {shown} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise UserError(f"cannot write run folders under {existing} (permission denied); "
                        f"choose another place with hydra.run.dir=...")


def check_device(cfg) -> None:
    """A device or precision this machine lacks; torch is imported only when one is asked for."""
    if not hasattr(cfg, "device"):
        return
    device = cfg.device.type
    precision = cfg.trainer.precision if hasattr(cfg, "trainer") else "fp32"
    if device in ("auto", "cpu") and precision != "fp16":
        return
    from msr.device import check_precision, resolve_device

    check_precision(precision, resolve_device(device))


def compose_config(conf_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    """The job's config, without its hydra node, checked for keys no schema has."""
    return compose_job(conf_dir, config_name, overrides)[0]


def compose_job(conf_dir: Path, config_name: str, overrides: list[str]) -> tuple[DictConfig, object]:
    """The job's config (as compose_config) and its hydra.mode (None unless a config or an override sets it)."""
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base=None, job_name=config_name):
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (ConfigCompositionException, OverrideParseException, OmegaConfBaseException) as err:
        raise UserError(one_line(err)) from None
    mode = cfg.hydra.mode
    with open_dict(cfg):
        del cfg["hydra"]
    check_known_keys(cfg)
    return cfg, mode


def check_added_keys(conf_dir: Path, config_name: str, overrides: list[str]) -> None:
    """For --cfg, which only composes: a `+key` is refused there as it would be in a run."""
    if any(o.startswith("+") and not o.startswith(("+hydra.", "++hydra.")) for o in overrides):
        compose_config(conf_dir, config_name, overrides)


def check_known_keys(node, prefix: str = "") -> None:
    """Refuse keys that no schema has. Hydra applies `+key=value` and `++key=value` with the
    struct flag opened, so a misspelt `+trainer.max_stepz=10` composes; comparing each typed
    node with its dataclass catches it wherever it came from (an override, a preset)."""
    schema = node._metadata.object_type
    if is_dataclass(schema):
        known = [f.name for f in fields(schema)]
        unknown = next((k for k in node.keys() if k not in known), None)
        if unknown is not None:
            raise UserError(f"{prefix}{unknown}: no such key; keys here: {', '.join(known)}")
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            check_known_keys(child, f"{prefix}{key}.")


def jobs_to_check(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Plain overrides as they are; for a sweep, enough jobs that each swept value is composed once."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise UserError(one_line(err)) from None
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if not sweeps:
        return [overrides]
    if not multirun:
        raise UserError(f"{sweeps[0].input_line} is a sweep: add -m to run one job per value")
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    if any(o.replace(" ", "") == "hydra/sweeper=optuna" for o in overrides):
        # define-by-run: a trial samples a key under a searched group (model.d_model) only when its
        # choice (model=transformer) has it, so those keys are the sweeper's to check, per trial
        groups = {o.get_key_element() for o in sweeps if "." not in o.get_key_element()}

        def sampled(o) -> bool:  # whether this key is checked here, not per trial
            key = o.get_key_element()
            return "." not in key or key.split(".")[0] not in groups

        fixed = [o.input_line for o in parsed if not o.is_sweep_override() and sampled(o)]
        sweeps = [o for o in sweeps if sampled(o)]
    choices = {}
    for o in sweeps:
        try:
            choices[o.get_key_element()] = list(o.sweep_string_iterator())
        except Exception:  # an interval for a sweeper plugin: its values are not known yet
            continue
    # Every combination, so values that only clash together (sizes, heads) are caught too;
    # past a few hundred jobs each value is still checked once against the first of the others.
    combos = list(itertools.islice(itertools.product(*choices.values()), MAX_CHECKED_JOBS + 1))
    if len(combos) > MAX_CHECKED_JOBS:
        first = [values[0] for values in choices.values()]
        combos = [tuple(v if j == i else first[j] for j in range(len(first)))
                  for i, values in enumerate(choices.values()) for v in values]
    return [fixed + [f"{k}={v}" for k, v in zip(choices, combo)] for combo in combos]


def one_line(err: Exception) -> str:
    if isinstance(err, MissingConfigException) and err.options is not None:
        group = Path(err.missing_cfg_file or "").parent.as_posix() or "config"
        option = Path(err.missing_cfg_file or "").name
        return f"{group}={option} does not exist; choose one of: {', '.join(sorted(err.options))}"
    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            return f"{cause.full_key}: no such key{allowed_keys(cause)}"
        detail = first_line(cause.msg)
        return f"{cause.full_key}: {detail}"
    if isinstance(err, OverrideParseException):
        return f"cannot parse override: {first_line(str(err))}"
    return first_line(str(err))


def allowed_keys(cause: OmegaConfBaseException) -> str:
    parent = cause.parent_node
    keys = list(parent.keys()) if parent is not None and hasattr(parent, "keys") else []
    keys = [k for k in keys if k != "hydra"]
    return f"; keys here: {', '.join(map(str, keys))}" if keys else ""


def first_line(text: str) -> str:
    """The message's first line; Hydra's "In 'X': ... while composing config:" heads the real one."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return lines[0] if lines else "invalid config"
