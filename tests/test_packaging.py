"""The package as users install it: a wheel and an sdist that pass `twine check`, and a wheel that works in a fresh
virtual environment without any extra (the layers import and run; the command answers --help and --version; a
command that needs an extra says which one in one line).

The environment gets torch first, as the Makefile does (TORCH_SPEC; a bare requirement could pull a CUDA build of
several GB), then the wheel with its declared dependencies from the package index.
"""

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")


def _run(*command: str | Path, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env, timeout=900, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


#: What a build must not read: environments, caches and outputs of the checkout.
NOT_SOURCES = shutil.ignore_patterns(
    ".venv", ".git", "site", "runs", "build", "dist", "*.egg-info", "*_cache", "__pycache__"
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: the sdist step writes into the tree it builds, and pytest-xdist workers build at once.
    source = tmp_path_factory.mktemp("source") / "convlstm"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, source)
    return out


@pytest.fixture(scope="module")
def fresh_env(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment holding torch and the wheel with its core dependencies only; returns its bin/."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=True)
    bin_dir = root / "bin"
    _run(bin_dir / "python", "-m", "pip", "install", "-q", TORCH_SPEC)
    (wheel,) = dist.glob("convlstm-*.whl")
    _run(bin_dir / "python", "-m", "pip", "install", "-q", wheel)
    return bin_dir


def test_wheel_and_sdist_pass_twine_check(dist: Path) -> None:
    files = sorted(p.name for p in dist.iterdir())
    assert any(name.endswith(".whl") for name in files) and any(name.endswith(".tar.gz") for name in files), files
    done = _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_wheel_ships_the_type_marker(dist: Path) -> None:
    (wheel,) = dist.glob("convlstm-*.whl")
    assert "convlstm/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_wheel_declares_the_pysteps_nowcast_entry_point(dist: Path) -> None:
    """The group a pysteps with nowcast plugins discovers (convlstm.interop.pysteps says why it is declared now)."""
    (wheel,) = dist.glob("convlstm-*.whl")
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [name for name in archive.namelist() if name.endswith(".dist-info/entry_points.txt")]
    text = archive.read(entry_points).decode()
    assert "[pysteps.plugins.nowcasts]\nconvlstm = convlstm.interop.pysteps:forecast\n" in text, text


def test_wheel_ships_the_pretrained_models(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every model under src/convlstm/models/pretrained/ is in the wheel, and so is one added to a copy of the
    tree (until the first real one lands, that copy is what shows the package data rule works); git does not
    ignore their weights, though it ignores other safetensors files."""
    (wheel,) = dist.glob("convlstm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = ROOT / "src" / "convlstm" / "models" / "pretrained"
    for file in sorted(shipped.glob("*/*")):
        if file.name in ("config.json", "model.safetensors", "MODEL_CARD.md"):
            assert f"convlstm/models/pretrained/{file.parent.name}/{file.name}" in names

    source = tmp_path_factory.mktemp("with-model") / "convlstm"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    model = source / "src" / "convlstm" / "models" / "pretrained" / "packaging-test"
    model.mkdir()
    for file in ("config.json", "model.safetensors", "MODEL_CARD.md"):
        (model / file).write_text("{}")
    out = tmp_path_factory.mktemp("dist-with-model")
    _run(sys.executable, "-m", "build", "--wheel", "--outdir", out, source)
    (wheel,) = out.glob("convlstm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for file in ("config.json", "model.safetensors", "MODEL_CARD.md"):
        assert f"convlstm/models/pretrained/packaging-test/{file}" in names

    if shutil.which("git") and (ROOT / ".git").exists():
        weights = "src/convlstm/models/pretrained/radar-nowcast/model.safetensors"
        assert _run("git", "check-ignore", "-q", weights, cwd=ROOT, check=False).returncode == 1
        assert (
            _run("git", "check-ignore", "-q", "runs/x/model/model.safetensors", cwd=ROOT, check=False).returncode == 0
        )


def test_core_install_runs_a_layer(fresh_env: Path, tmp_path: Path) -> None:
    code = (
        "import torch, convlstm\n"
        "layer = convlstm.ConvLSTM(2, 4, kernel_size=3)\n"
        "out, state = layer(torch.randn(1, 3, 2, 8, 8))\n"
        "assert out.shape == (1, 3, 4, 8, 8), out.shape\n"
        "print(convlstm.__file__)\n"
    )
    done = _run(fresh_env / "python", "-c", code, cwd=tmp_path)
    assert "site-packages" in done.stdout, done.stdout  # the installed copy, not the checkout's src/


def test_command_answers_help_and_version(fresh_env: Path) -> None:
    assert "fit" in _run(fresh_env / "convlstm", "--help").stdout
    version = _run(sys.executable, "-c", "import convlstm; print(convlstm.__version__)").stdout.strip()
    assert _run(fresh_env / "convlstm", "--version").stdout.strip() == f"convlstm {version}"


def test_a_command_that_needs_an_extra_names_it_in_one_line(fresh_env: Path, tmp_path: Path) -> None:
    done = _run(fresh_env / "convlstm", "fit", "-c", "demo", "--run-dir", tmp_path / "run", check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "convlstm[train]"' in lines[0], done.stderr
    assert "Traceback" not in done.stderr


# Last in the file: it adds the train extra to the shared environment, which the tests above must not see.
@pytest.mark.slow
def test_the_wheel_with_the_train_extra_runs_the_demo(dist: Path, fresh_env: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("convlstm-*.whl")
    _run(fresh_env / "python", "-m", "pip", "install", "-q", f"{wheel}[train]")
    run_dir = tmp_path / "demo"
    done = _run(fresh_env / "convlstm", "demo", "--run-dir", run_dir, "--minutes", "0.05", cwd=tmp_path)
    assert "persistence" in done.stdout and "trained" in done.stdout, done.stdout[-2000:]
    assert (run_dir / "report.html").stat().st_size > 0
