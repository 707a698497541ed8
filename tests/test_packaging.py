"""A non-editable install: the wheel carries conf/, and the installed `msr` composes from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("msr-*.whl"))


def test_wheel_ships_the_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("msr/conf/train.yaml", "msr/conf/runs.yaml", "msr/conf/model/lstm.yaml",
                 "msr/conf/model/transformer.yaml", "msr/conf/hydra/job_logging/msr.yaml",
                 "msr/conf/hydra/sweeper/msr.yaml", "hydra_plugins/msr_sweeper/msr_sweeper.py",
                 "msr/cli.py", "msr/models/recurrent.py"):
        assert path in names, path
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "msr = msr.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:  # what `pip install msr-*.whl` puts in site-packages
        archive.extractall(site)
    # site goes first on the path, ahead of the checkout's editable install
    code = (f"import sys; sys.path.insert(0, {str(site)!r}); import msr.cli; print(msr.cli.CONF_DIR); "
            "msr.cli.main(['train', 'model=gru', '--cfg', 'job'])")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    conf_dir, *config = result.stdout.splitlines()
    assert conf_dir == str(site / "msr" / "conf")
    assert "  name: gru" in config
