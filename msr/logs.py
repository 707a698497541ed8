"""The console: log lines on stderr (rich on a terminal, plain otherwise) and whether a live
progress bar may take their place.

conf/hydra/job_logging/msr.yaml builds the console handler from here, with the progress
module's filter, which hides the progress lines while the bar shows them.
"""

from __future__ import annotations

import functools
import logging
import sys


@functools.lru_cache(maxsize=None)
def console():
    """The one rich console on stderr, shared by log lines and the progress bar so they interleave."""
    from rich.console import Console

    return Console(stderr=True)


def console_handler(format: str, datefmt: str) -> logging.Handler:
    """Hydra's job_logging calls this: rich log lines on a terminal, plain lines otherwise."""
    if sys.stderr.isatty():
        handler = unwrapped_rich_handler(datefmt)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(format, datefmt))
    # records meant for msr.log alone (an error line that stderr shows in its own words)
    handler.addFilter(lambda record: not getattr(record, "file_only", False))
    return handler


def unwrapped_rich_handler(datefmt: str) -> logging.Handler:
    from datetime import datetime

    from rich.logging import RichHandler
    from rich.text import Text

    class UnwrappedRichHandler(RichHandler):
        """Rich's look, one line per message: its table would fold a long line (a run folder's
        path) at the terminal's width, and a path copied from two lines is broken."""

        def emit(self, record: logging.LogRecord) -> None:
            time = datetime.fromtimestamp(record.created).strftime(f"[{datefmt}]")
            line = Text.assemble((time, "log.time"), " ", self.get_level_text(record), " ",
                                 self.render_message(record, self.format(record)))
            try:
                self.console.print(line, soft_wrap=True)  # the terminal wraps it, for show only
            except Exception:
                self.handleError(record)

    return UnwrappedRichHandler(console=console(), show_path=False, markup=False)


def interactive() -> bool:
    """A live progress bar only for a single run on a terminal; sweeps and pipes get log lines."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return sys.stderr.isatty() and not multirun
