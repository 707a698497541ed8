"""Where conf/ lies: an installed wheel carries it as msr/conf; a checkout keeps it at the top level.

A module of its own so that the CLI and `msr reproduce` (which the CLI starts) both read it
without importing each other, and without loading Hydra.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CONF_DIR = _PACKAGE / "conf" if (_PACKAGE / "conf").is_dir() else _PACKAGE.parent / "conf"
