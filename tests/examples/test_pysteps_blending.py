"""examples/pysteps_blending.py: a convlstm nowcast, reached through pysteps' interface, blended with an NWP field."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import convlstm

pytest.importorskip("pysteps", reason="the example needs pysteps: pip install convlstm[nowcast]")

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "pysteps_blending.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pysteps_blending_example", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


example = _load()


def test_the_blend_starts_as_the_nowcast_and_ends_as_the_nwp_forecast() -> None:
    result = example.run(members=2, steps=4)
    assert result.nowcast.shape == result.blend.shape == (2, 4, example.SIZE, example.SIZE)
    assert np.isfinite(result.blend).all() and (result.blend >= 0).all()
    assert result.with_nowcast[0] > 0.99  # the first lead is the nowcast's...
    assert result.with_nwp[0] < 0.5  # ...not the displaced NWP cell's
    assert result.with_nwp[-1] > 0.99  # the handover ends on the NWP forecast
    assert result.blend[:, 0].mean() == pytest.approx(result.nowcast[:, 0].mean(), rel=0.05)
    assert result.blend[:, -1].mean() == pytest.approx(result.nwp[-1].mean(), rel=0.05)


def test_a_saved_model_directory_blends_too(tmp_path: Path) -> None:
    torch.manual_seed(0)
    convlstm.create_model("encoder_forecaster_tiny").save_pretrained(tmp_path / "model")
    result = example.run(model=str(tmp_path / "model"), members=2, steps=3)
    assert result.blend.shape == (2, 3, example.SIZE, example.SIZE)
    assert np.isfinite(result.blend).all()
    assert result.with_nowcast[0] > 0.95 and result.with_nwp[-1] > 0.99


def test_script_prints_one_row_per_lead_time(capsys: pytest.CaptureFixture[str]) -> None:
    example.main(["--steps", "3", "--members", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("convlstm nowcast (persistence, 2 members)")
    assert "blend~nowcast" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["5", "10", "15"]
    with pytest.raises(SystemExit):
        example.main(["--steps", "2"])  # no room for the handover
