"""msr's Hydra sweeper: Hydra's grid (the basic sweeper's grammar: `a=1,2 b=range(3)`) made safe
for long studies. It writes the sweep's definition and job list to sweep.json before any job
starts, goes past failed jobs (each job's outcome is in sweep.jsonl, see msr.sweeps), stops the
whole sweep on SIGTERM as on Ctrl-C, and resumes an interrupted sweep (`resume=SWEEP_FOLDER`):
completed jobs are skipped before Hydra sets them up, so not one of their files is touched.

It lives in hydra_plugins/ because Hydra instantiates plugins from that package only; it
imports nothing heavy, as Hydra imports every plugin module whenever an app starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict


class MsrSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict] = None,
                 resume: bool = False) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.resume = resume

    def sweep(self, arguments: List[str]) -> Any:
        from msr import sweeps

        jobs = self.expand(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        if self.resume:
            todo = sweeps.resume_plan(sweep_dir, jobs, self.job_folder)
        else:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            sweeps.write_definition(sweep_dir, list(self.config.hydra.overrides.task), jobs)
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
            todo = list(range(len(jobs)))
        returns = []
        with sweeps.stop_on_sigterm():
            for first, batch in sweeps.batches(todo, jobs, self.max_batch_size):
                self.validate_batch_is_legal(batch)
                # A failed job's JobReturn is not read here (reading it re-raises the job's error and
                # ends the sweep): msr.sweeps records each outcome, and the CLI reports them at the end.
                returns.append(self.launcher.launch(batch, initial_job_idx=first))
        return returns

    def expand(self, arguments: List[str]) -> List[List[str]]:
        """Every job's overrides, in job-number order."""
        params = self._parse_config()
        params.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(params)
        return [list(job) for batch in self.split_arguments(overrides, None) for job in batch]

    def job_folder(self, overrides: List[str], num: int) -> Path:
        """Where job `num` runs, as the launcher will place it (hydra.sweep.subdir may name it by
        its overrides, not only by its number)."""
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.num = num
            config.hydra.job.id = str(num)
        return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
