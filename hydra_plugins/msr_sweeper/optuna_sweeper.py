"""msr's Optuna sweeper (`hydra/sweeper=optuna`): a study of `n_trials` trials, each one a job of the
sweep, with the search-space grammar of Hydra's optuna sweeper:

    choice(a,b,c)            categorical          range(1,9,2)   integers 1, 3, 5, 7 (stop excluded, as in grids)
    interval(0,0.3)          uniform float        tag(log,interval(1e-4,1e-1))   log-uniform
    interval(1,64)           uniform integer      key=value      fixed, as in any run

It runs on current Optuna by ask-and-tell: it asks `n_jobs` trials, launches them as one batch
through Hydra's launcher (so joblib and submitit workers share the one study) and tells each its
job's objective from the manifest (msr.sweeps). The study lives in the sweep folder in Optuna's
file journal, so `resume=SWEEP_FOLDER` goes on to n_trials in all: a trial that was running when
the study stopped runs again as the same trial, from its checkpoint. Group choices are sampled
first (define-by-run), so that `model=choice(lstm,transformer) model.d_model=...` samples
model.d_model only for the trials whose model has it.

Optuna is imported inside the methods: Hydra imports every plugin module whenever an app starts.
"""

import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Transformer
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

log = logging.getLogger("msr")
ABSENT = object()


@dataclass
class Param:
    """One searched key: `kind` is categorical (`choices`), int or float (low..high, step, log)."""

    key: str
    kind: str
    choices: tuple = ()
    low: float = 0
    high: float = 0
    step: Optional[float] = None
    log: bool = False

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        suggest = trial.suggest_int if self.kind == "int" else trial.suggest_float
        return suggest(self.key, self.low, self.high, step=self.step, log=self.log) if self.step else \
            suggest(self.key, self.low, self.high, log=self.log)


def search_space(lines: List[str]) -> tuple[List[Param], List[str]]:
    """The searched keys, group choices first (so a trial knows its model before its sizes), and
    the fixed overrides. A UserError names the first override that is no search space."""
    from hydra.errors import OverrideParseException

    from msr.errors import UserError
    from msr.overrides import one_line

    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except OverrideParseException as err:
        raise UserError(f"the Optuna search space does not parse: {one_line(err)}") from None
    params, fixed = [], []
    for o in overrides:
        if not o.is_sweep_override():
            fixed.append(o.input_line)
            continue
        try:
            params.append(to_param(o))
        except (ValueError, TypeError) as err:
            raise UserError(f"{o.input_line}: {err}; the Optuna sweeper takes choice(...), range(...), "
                            f"interval(a,b) or tag(log,interval(a,b))") from None
    params.sort(key=lambda p: "." in p.key)  # stable: `model` before `model.d_model`
    return params, fixed


def to_param(o) -> Param:
    key, value = o.get_key_element(), o.value()
    if o.is_interval_sweep():
        whole = isinstance(value.start, int) and isinstance(value.end, int)
        if not value.start < value.end or ("log" in value.tags and value.start <= 0):
            raise ValueError("an interval needs start < end (and start > 0 on a log scale)")
        return Param(key, "int" if whole else "float", low=value.start, high=value.end, log="log" in value.tags)
    if not (o.is_choice_sweep() or o.is_range_sweep()):
        raise ValueError("not a kind of search space")
    values = list(o.sweep_iterator(transformer=Transformer.encode))
    if not values:
        raise ValueError("it has no values")
    if any(not isinstance(v, (str, int, float, bool, type(None))) for v in values):
        raise ValueError("a choice's values must be plain values, not lists or dicts")
    if o.is_choice_sweep() or value.shuffle or len(values) == 1:
        return Param(key, "categorical", choices=tuple(values))
    whole = all(isinstance(v, int) for v in values)
    return Param(key, "int" if whole else "float", low=values[0], high=values[-1], step=values[1] - values[0])


def override_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    if isinstance(value, str) and any(c in value for c in " ,()[]{}='\"\\"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


class OptunaSweeper(Sweeper):
    def __init__(self, n_trials: int = 20, n_jobs: int = 1, sampler: str = "tpe", seed: Optional[int] = None,
                 pruner: Any = "median", params: Optional[dict] = None, resume: bool = False) -> None:
        self.n_trials, self.n_jobs, self.sampler, self.seed = n_trials, n_jobs, sampler, seed
        self.pruner, self.params, self.resume = pruner, params, resume

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: List[str]) -> Any:
        import optuna

        from msr import sweeps
        from msr.errors import UserError

        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise UserError(f"hydra.sweeper.n_trials={self.n_trials} would run no trial: give a number >= 1")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise UserError(f"hydra.sweeper.n_jobs={self.n_jobs}: give the number of trials to run at once (>= 1)")
        given = [f"{k}={v}" for k, v in (OmegaConf.to_container(self.params) if self.params else {}).items()]
        self.space, self.fixed = search_space([*given, *arguments])
        sweep_dir = Path(self.config.hydra.sweep.dir)
        objective = self.config.sweep.objective
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        sweeps.write_definition(sweep_dir, list(self.config.hydra.overrides.task), [], study={"n_trials": self.n_trials})
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            storage=sweeps.study_storage(sweep_dir), study_name=sweeps.STUDY_NAME, load_if_exists=self.resume,
            direction=sweeps.objective_direction(objective, self.config.sweep.get("direction")),
            sampler=self.make_sampler(), pruner=sweeps.make_pruner(self.pruner))
        with sweeps.stop_on_sigterm():
            unfinished = self.unfinished(study, sweep_dir) if self.resume else []
            for trial in unfinished:  # each alone: a launcher numbers a batch's jobs from its first
                self.launch(study, [trial], sweep_dir)
            while len(study.trials) < self.n_trials:
                batch = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - len(study.trials)))]
                for trial in batch:
                    trial.set_user_attr("overrides", self.sample(trial))
                self.launch(study, batch, sweep_dir)
        self.write_results(study, sweep_dir, objective)
        return None

    def make_sampler(self):
        import optuna

        from msr.errors import UserError

        samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
        if self.sampler not in samplers:
            raise UserError(f"hydra.sweeper.sampler={self.sampler} is not known: give one of {', '.join(samplers)}")
        return samplers[self.sampler](seed=self.seed)

    def sample(self, trial) -> List[str]:
        """The trial's overrides: its group choices, then those keys of the chosen options (searched
        or fixed) that its composed config has, so `model.d_model` goes only to Transformer trials."""
        chosen = {p.key: p.suggest(trial) for p in self.space if "." not in p.key}
        groups = [f"{k}={override_value(v)}" for k, v in chosen.items()]

        def conditional(key: str) -> bool:  # a key inside a sampled option, with no `+` to add it
            return "." in key and key.split(".")[0] in chosen

        fixed = [o for o in self.fixed if not conditional(o.split("=")[0])]
        needed = any(conditional(p.key) for p in self.space) or len(fixed) < len(self.fixed)
        config = self.hydra_context.config_loader.load_sweep_config(self.config, [*fixed, *groups]) if needed else None

        def has(key: str) -> bool:
            return not conditional(key) or OmegaConf.select(config, key, default=ABSENT) is not ABSENT

        fixed += [o for o in self.fixed if conditional(o.split("=")[0]) and has(o.split("=")[0])]
        chosen.update({p.key: p.suggest(trial) for p in self.space if "." in p.key and has(p.key)})
        return [*fixed, *(f"{k}={override_value(v)}" for k, v in chosen.items())]

    def unfinished(self, study, sweep_dir: Path) -> list:
        """The trials a killed study left running, to run again in their own folders."""
        import optuna

        from msr import sweeps

        running = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
        going_on = sum(sweeps.prepare_rerun(sweep_dir / str(t.number), sweep_dir) for t in running)
        done = len(study.trials) - len(running)
        print(f"msr: resuming study {sweep_dir}: {done} of {self.n_trials} trials done, {going_on} go on from their "
              f"checkpoints, {len(running) - going_on} run again from the start", file=sys.stderr)
        return [optuna.trial.Trial(study, t._trial_id) for t in running]

    def launch(self, study, trials: list, sweep_dir: Path) -> None:
        """Run the trials as one batch of jobs numbered by their trial numbers, then tell each one's end."""
        from msr import sweeps

        for trial in trials:
            sweeps.ACTIVE_TRIALS[trial.number] = trial  # for jobs the launcher runs in this process
        try:
            self.launcher.launch([trial.user_attrs["overrides"] for trial in trials], initial_job_idx=trials[0].number)
        finally:
            for trial in trials:
                sweeps.ACTIVE_TRIALS.pop(trial.number, None)
        ended = {r["job"]: r for r in sweeps.read_manifest(sweep_dir)}
        for trial in trials:
            tell(study, trial, ended.get(trial.number), sweep_dir, self.config.sweep.objective)

    def write_results(self, study, sweep_dir: Path, objective: str) -> None:
        import optuna

        from msr import sweeps
        from msr.errors import UserError
        from msr.runs import atomic_write

        complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        if not complete:
            reported = sweeps.reported_metrics(sweep_dir)
            if reported and objective not in reported:
                raise UserError(f"sweep.objective={objective}: no trial reports it; its runs report "
                                f"{', '.join(sorted(reported))}: choose one of them")
            return
        best = study.best_trial
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value,
                   "best_trial": best.number, "best_folder": str(sweep_dir / str(best.number))}
        atomic_write(sweep_dir / "optimization_results.yaml", lambda f: f.write(OmegaConf.to_yaml(results)))
        log.info("best trial %d: %s=%s", best.number, objective, best.value)


def tell(study, trial, record: Optional[dict], sweep_dir: Path, objective: str) -> None:
    """The job's end as Optuna's: completed with its objective, pruned, or failed (a job without
    the objective is failed in the manifest too). An interrupted trial stays running, to resume."""
    from optuna.trial import TrialState

    from msr import sweeps

    status = (record or {}).get("status")
    value = (record or {}).get("objective")
    if status == "interrupted":
        return
    if status == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    elif status == "completed" and isinstance(value, (int, float)) and math.isfinite(value):
        study.tell(trial, value)
    else:
        study.tell(trial, state=TrialState.FAIL)
        if status == "completed":
            sweeps.append_line(sweep_dir / sweeps.MANIFEST, json.dumps(
                {**record, "status": "failed", "reason": f"its metrics.json has no {objective} to tell the study"}) + "\n")
