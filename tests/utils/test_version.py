"""One package version: utils/version.py holds it, the package root, the command line and the build read it there."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import convlstm
from convlstm.cli.main import main
from convlstm.utils import version

ROOT = Path(__file__).resolve().parents[2]


def test_the_root_and_the_command_line_give_the_version_of_utils(capsys: pytest.CaptureFixture[str]) -> None:
    assert convlstm.__version__ is version.__version__
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"convlstm {version.__version__}"


def test_the_build_reads_the_version_without_importing_the_package() -> None:
    pytest.importorskip("setuptools", reason="the build backend reads the version")
    attr = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "convlstm.utils.version.__version__"
    code = (
        "import sys\n"
        "from setuptools.config.expand import read_attr\n"
        f"print(read_attr({attr!r}, {{'': 'src'}}, {str(ROOT)!r}), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.split() == [version.__version__, "False"]
