"""Resuming a run: its newest checkpoint, loaded only into a run with the settings it started with."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from msr.errors import UserError
from msr.runs import latest_checkpoint, saved_overrides
from msr.train.checkpoint import load_meta, load_tokenizer, load_trainer_state, load_training_weights

log = logging.getLogger("msr")

# settings that shape the optimizer's parameter groups and rates: its saved state is for them
FIXED_ON_RESUME = ("optimizer", "finetune")
HORIZON_SCHEDULES = ("cosine", "linear")  # they decay over trainer.max_steps


def restore(folder: Path, model, tokenizer, cfg, dict_cfg, device) -> dict | None:
    """Load the weights of `folder`'s newest checkpoint into `model`; its trainer state (for fit's
    `resume`), or None when no checkpoint was written yet."""
    source = latest_checkpoint(folder)
    if source is None:
        log.info("resume=%s: no checkpoint was written yet; starting from step 0", folder)
        return None
    if load_tokenizer(source).to_str() != tokenizer.to_str():
        raise UserError(f"resume={folder}: the vocabulary built from today's data differs from the run's; "
                        f"the data settings or files changed since it started")
    saved = load_meta(source)["config"]
    for key in FIXED_ON_RESUME:
        now = OmegaConf.to_container(dict_cfg[key], resolve=True) if key in dict_cfg else None
        if saved.get(key) != now:
            changed = sorted(k for k in {**saved.get(key, {}), **(now or {})}
                             if saved.get(key, {}).get(k) != (now or {}).get(k))
            raise UserError(f"resume={folder}: {key}.{changed[0]} differs from the run's; a resumed run goes on "
                            f"with the settings it started with (start a new run to change them)")
    load_training_weights(source, model, device)
    state = load_trainer_state(source)
    if state["step"] >= cfg.trainer.max_steps:
        raise UserError(f"resume={folder}: the run already reached trainer.max_steps={cfg.trainer.max_steps}")
    horizon = saved.get("trainer", {}).get("max_steps")
    if horizon != cfg.trainer.max_steps and cfg.scheduler.name in HORIZON_SCHEDULES:
        log.warning("trainer.max_steps is %d now, %s before: the %s schedule's horizon changed with it, so from step "
                    "%d the learning rate follows the new curve (not the one the run started on)",
                    cfg.trainer.max_steps, horizon, cfg.scheduler.name, state["step"])
    log.info("resuming %s from %s", folder, source.name)
    return state


def resume_overrides(folder: Path) -> list[str]:
    """The overrides this resume added to those the run started with."""
    from hydra.core.hydra_config import HydraConfig

    saved = saved_overrides(folder)
    return [o for o in HydraConfig.get().overrides.task if o not in saved and not o.startswith("resume=")]
