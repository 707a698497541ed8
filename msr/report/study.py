"""The Optuna study of a sweep (`hydra/sweeper=optuna`) in its report.

Reads the study from the sweep folder's journal (msr.sweeps.study_storage) and gives
report.md a "Study" section — trials by state, the best trial, the parameters' importances — and
two plots: optimization_history.png (each completed trial's objective, and the best so far) and
param_importances.png. Optuna is imported only when the sweep folder holds a study.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from msr.sweeps import STUDY_JOURNAL, STUDY_NAME, study_storage

log = logging.getLogger("msr")


@dataclass
class Study:
    direction: str  # minimize | maximize
    states: dict[str, int]  # trials by state: COMPLETE, PRUNED, FAIL, RUNNING, ...
    values: list[tuple[int, float]]  # (trial number, objective) of the completed trials, in order
    best: tuple[int, float, dict] | None  # number, value, params
    importances: dict[str, float] = field(default_factory=dict)  # empty: fewer than 2 trials or parameters
    why_no_importances: str = ""
    evaluator: str = ""  # how the importances were computed


def importance_evaluator(trials: int):
    """PED-ANOVA (Optuna 5's default evaluator; fANOVA would need scikit-learn, and another method
    per environment would give another report): how differently each parameter is distributed
    among the best trials (the top quantile, at least 2 of them) than among all of them."""
    import optuna

    quantile = min(0.5, max(0.1, 2 / trials))
    return f"PED-ANOVA, top {quantile:.0%}", optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)


def read_study(sweep: Path | None) -> Study | None:
    """The study in `sweep`, or None when it holds none."""
    if sweep is None or not (Path(sweep) / STUDY_JOURNAL).is_file():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY_NAME, storage=study_storage(sweep))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    best = study.best_trial if complete else None
    result = Study(study.direction.name.lower(), states, [(t.number, t.value) for t in complete],
                   (best.number, best.value, dict(best.params)) if best else None)
    varied = {name for name in {k for t in complete for k in t.params}
              if len({repr(t.params.get(name)) for t in complete}) > 1}
    if len(complete) < 2 or not varied:
        result.why_no_importances = (f"{len(complete)} completed trial(s), {len(varied)} parameter(s) that vary; "
                                     "importances need 2 and 1")
    else:
        result.evaluator, evaluator = importance_evaluator(len(complete))
        result.importances = dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    return result


def study_markdown(study: Study, plots: list[Path]) -> str:
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(study.states.items()))
    lines = [f"## Study\n\nOptuna study ({study.direction}): {sum(study.states.values())} trials — {counts}."]
    if study.best is not None:
        number, value, params = study.best
        shown = ", ".join(f"`{k}={v}`" for k, v in params.items())
        lines.append(f"Best: trial {number}, objective {value:.6g}, with {shown}.")
    if study.importances:
        lines.append(f"Importances ({study.evaluator}):\n\n| parameter | importance |\n|---|---|\n"
                     + "".join(f"| `{k}` | {v:.3f} |\n" for k, v in study.importances.items()))
    elif study.why_no_importances:
        lines.append(f"No importances: {study.why_no_importances}.")
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n\n".join(lines) + "\n"


def plot_study(out: Path, study: Study) -> list[Path]:
    """optimization_history.png and, when there are importances, param_importances.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msr.report.plots import save

    written = []
    if study.values:
        figure, ax = plt.subplots(figsize=(6, 4))
        numbers, values = zip(*study.values)
        pick = min if study.direction == "minimize" else max
        best = [pick(values[: i + 1]) for i in range(len(values))]
        ax.scatter(numbers, values, s=14, label="completed trial")
        ax.step(numbers, best, where="post", color="C1", label="best so far")
        ax.set(xlabel="trial", ylabel="objective", title=f"Optimization history ({study.direction})")
        ax.legend(fontsize="small")
        written.append(save(figure, out / "optimization_history.png"))
    if study.importances:
        names = list(study.importances)[::-1]  # the most important on top
        figure, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(names)))
        ax.barh(names, [study.importances[n] for n in names])
        ax.set(xlabel=f"importance ({study.evaluator})", title="Parameter importances")
        written.append(save(figure, out / "param_importances.png"))
    else:
        log.info("no param_importances.png: %s", study.why_no_importances)
    return written
