"""How a signal stops training: after the current step, with a checkpoint to resume from.

Ctrl-C and SIGTERM stop the run (`interrupted`). Under a scheduler that preempts (submitit on
SLURM, or its local executor) the job's preemption signal, SIGUSR2 by default, is caught too:
the loop checkpoints first, then the scheduler's own handler requeues the job, which goes on
from that checkpoint in its own folder.
"""

from __future__ import annotations

import os
import signal

from msr.errors import Preempted, Terminated


def preemption_signal() -> int | None:
    """The signal a scheduler requeues this job on, when one has set a handler for it."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    signum = getattr(signal, f"SIG{name}", None)
    return signum if signum is not None and callable(signal.getsignal(signum)) else None


class GracefulStop:
    """Ctrl-C, SIGTERM or a preemption during training asks the loop to stop after the current
    step, so that it can write a checkpoint to resume from; a second signal stops at once."""

    def __init__(self):
        self.signal: int | None = None

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise stop_exception(signum)
        self.signal = signum  # the loop says so after the step: a handler that logged could cut into a write

    def __enter__(self) -> "GracefulStop":
        signals = [signal.SIGINT, signal.SIGTERM]
        if (preempt := preemption_signal()) is not None:
            signals.append(preempt)
        self._previous = {s: signal.signal(s, self._handle) for s in signals}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def stop_exception(signum: int) -> KeyboardInterrupt:
    if signum == signal.SIGTERM:
        return Terminated()
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return Preempted(signum)


def requeue(stop: KeyboardInterrupt) -> None:
    """After a preempted job is recorded: hand the signal to the scheduler's handler, which
    requeues the job and exits (submitit's checkpoint_and_try_requeue)."""
    handler = signal.getsignal(stop.signum) if isinstance(stop, Preempted) else None
    if callable(handler):
        handler(stop.signum, None)
