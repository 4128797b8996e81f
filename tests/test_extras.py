"""The map from missing modules to pyproject's extras agrees with pyproject.toml, and the command turns a missing
extra into one line."""

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import convlstm
from convlstm.cli.main import main
from convlstm.utils.extras import MODULE_EXTRAS, extra_for, missing_extra_message

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_mapped_module_comes_with_its_extra() -> None:
    distributions = importlib.metadata.packages_distributions()  # the test venv holds every extra
    for module, extra in MODULE_EXTRAS.items():
        provided_by = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        declared = {_name(r) for r in EXTRAS[extra]}
        assert provided_by & declared, (module, extra, provided_by, declared)


def test_every_dependency_of_an_extra_has_a_mapped_module() -> None:
    distributions = importlib.metadata.packages_distributions()
    mapped = {d.lower().replace("_", "-") for m in MODULE_EXTRAS for d in distributions.get(m, [])}
    for extra in ("data", "train", "nowcast", "keras", "export", "remote", "weather"):
        for requirement in EXTRAS[extra]:
            assert _name(requirement) in mapped, (extra, requirement)


def test_the_all_extra_holds_every_other() -> None:
    (everything,) = EXTRAS["all"]
    named = set(re.search(r"\[(.*)\]", everything).group(1).split(","))  # type: ignore[union-attr]
    # footage only carries sample camera clips for benchmarks/real_video.py; test and docs are for developers
    assert named == set(EXTRAS) - {"all", "test", "docs", "footage"}


def test_missing_module_message() -> None:
    error = ModuleNotFoundError("No module named 'lightning.pytorch'", name="lightning.pytorch")
    assert extra_for(error) == "train"
    assert 'pip install "convlstm[train]"' in (missing_extra_message(error) or "")
    assert missing_extra_message(ModuleNotFoundError("x", name="not_ours")) is None


def test_command_turns_a_missing_extra_into_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import convlstm.cli.main as cli

    def needs_pysteps(_args: object) -> int:
        raise ModuleNotFoundError("No module named 'pysteps'", name="pysteps")

    monkeypatch.setattr(cli, "_dispatch", needs_pysteps)
    assert main(["list-models"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "convlstm list-models: error: this needs the module 'pysteps', which comes with an extra: "
        'pip install "convlstm[nowcast]"'
    ]


#: Runs the command as on the base install: a None entry in sys.modules makes `import` fail as if the package were
#: not installed.
WITHOUT_EXTRAS = """
import sys
for missing in ("lightning", "pytorch_lightning", "matplotlib", "imageio"):
    sys.modules[missing] = None
from convlstm.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.e2e
def test_list_models_needs_no_extra() -> None:
    # A fresh interpreter: this one has imported Lightning already.
    source = str(Path(convlstm.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, "list-models", "shi2015_convlstm_5x5_*"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "shi2015_convlstm_5x5_256" in done.stdout and "13,524,496" in done.stdout, done.stdout
