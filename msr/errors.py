"""Errors that are the user's to fix: printed as one line, never as a traceback."""


class UserError(Exception):
    """A mistake in the command line, the config or the input files."""


class ConfigError(UserError):
    """A config value that is out of range or of the wrong kind."""

    def __init__(self, key: str, value, allowed: str):
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key = key
        self.value = value


class TrainingFailed(Exception):
    """Training cannot go on (for example, the loss is no longer a number)."""


class Pruned(Exception):
    """An Optuna study's pruner stopped this trial: its objective so far is not promising. The run
    ends with status `pruned`, and the sweep goes on."""


class Stopped(KeyboardInterrupt):
    """The run stops before its end, with a checkpoint to resume from: Ctrl-C, SIGTERM or
    trainer.stop_at. It unwinds like Ctrl-C; `reason` and `exit_code` say which it was."""

    reason = "interrupted by the user (Ctrl-C)"
    exit_code = 130


class Terminated(Stopped):
    """SIGTERM, raised where the run is."""

    reason = "stopped by SIGTERM"
    exit_code = 143


class Preempted(Stopped):
    """The scheduler's preemption or timeout signal (SIGUSR2 under submitit): the job is requeued."""

    exit_code = 143

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.reason = "preempted by the scheduler; requeued to go on from checkpoints/last"


class Paused(Stopped):
    """trainer.stop_at: stopped on purpose, as if interrupted there (msr reproduce replays resumed runs so)."""

    exit_code = 0

    def __init__(self, step: int):
        super().__init__(step)
        self.reason = f"paused at step {step} (trainer.stop_at={step})"
