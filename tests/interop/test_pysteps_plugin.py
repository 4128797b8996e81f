"""convlstm.interop.pysteps: the nowcast pysteps finds as "convlstm", its shapes, units, NaN, ensembles and errors."""

import importlib.metadata
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

pytest.importorskip("pysteps", reason="the pysteps plugin needs pysteps: pip install convlstm[nowcast]")

from pysteps import nowcasts

import convlstm
from convlstm.interop import pysteps as plugin
from convlstm.units import rain_rate_to_pixel

ROOT = Path(__file__).resolve().parents[2]
SIZE = 16


def rain_field(frames: int = 4, seed: int = 0) -> np.ndarray:
    """(frames, SIZE, SIZE) rain rates in mm/h: a wet square with varied intensity on a dry background."""
    rng = np.random.default_rng(seed)
    field = np.zeros((frames, SIZE, SIZE))
    field[:, 4:12, 4:12] = rng.uniform(0.5, 40.0, size=(frames, 8, 8))
    return field


class Recorder(nn.Module):
    """Repeats the last context frame, plus ``ramp`` times the step number; keeps the context it was given."""

    def __init__(self, ramp: float = 0.0, channels: int = 1) -> None:
        super().__init__()
        self.ramp, self.in_channels = ramp, channels
        self.seen: list[Tensor] = []

    def forward(self, context: Tensor, horizon: int) -> Tensor:
        self.seen.append(context.clone())
        steps = torch.arange(1, horizon + 1, dtype=context.dtype).view(1, horizon, 1, 1, 1)
        return context[:, -1:] + self.ramp * steps


class OwnEnsemble(Recorder):
    """A model that makes its own members, as the steps baseline does: member k adds k to persistence."""

    def __init__(self, members: int) -> None:
        super().__init__()
        self.members = members

    def ensemble(self, context: Tensor, horizon: int) -> Tensor:
        base = self(context, horizon)  # (1, horizon, 1, m, n)
        return torch.stack([base + k for k in range(self.members)], dim=1)


# --- registration ----------------------------------------------------------------------------------------------------


def test_get_method_gives_the_plugin_once_the_module_is_imported() -> None:
    assert nowcasts.get_method("convlstm") is plugin.forecast
    assert nowcasts.get_method("ConvLSTM") is plugin.forecast  # pysteps lowercases the name
    assert plugin.register() is True  # again: nothing changes
    assert nowcasts.get_method("convlstm") is plugin.forecast
    assert sum(f is plugin.forecast for f in nowcasts.interface._nowcast_methods.values()) == 1


def test_a_method_of_the_same_name_from_elsewhere_is_left_in_place(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def other(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setitem(nowcasts.interface._nowcast_methods, "convlstm", other)
    with caplog.at_level(logging.WARNING, logger=plugin.__name__):
        assert plugin.register() is False
    assert nowcasts.get_method("convlstm") is other
    assert "already has a nowcast method named 'convlstm'" in caplog.text


def test_the_module_imports_and_registers_without_lightning() -> None:
    code = (
        "import sys\n"
        "for missing in ('lightning', 'pytorch_lightning'):  # pysteps itself imports matplotlib\n"
        "    sys.modules[missing] = None\n"
        "import convlstm.interop.pysteps as plugin\n"
        "from pysteps import nowcasts\n"
        "assert nowcasts.get_method('convlstm') is plugin.forecast\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"  # and pysteps' banner kept out of stdout


def test_the_entry_point_for_pysteps_future_plugin_group_is_declared() -> None:
    """The editable install's metadata is that of the checkout it was made from, so the declaration is read from
    pyproject.toml; the wheel test (tests/test_packaging.py) finds it in the built wheel."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert plugin.ENTRY_POINT_GROUP == "pysteps.plugins.nowcasts"
    assert declared[plugin.ENTRY_POINT_GROUP] == {"convlstm": "convlstm.interop.pysteps:forecast"}
    # What a pysteps that discovers the group would load:
    entry = importlib.metadata.EntryPoint("convlstm", declared[plugin.ENTRY_POINT_GROUP]["convlstm"], "x")
    assert entry.load() is plugin.forecast
    assert entry.name == plugin.METHOD_NAME


# --- shapes and steps ------------------------------------------------------------------------------------------------


def test_deterministic_and_ensemble_shapes_with_registered_models() -> None:
    precip = rain_field()
    assert plugin.forecast(precip, None, 3, model="persistence").shape == (3, SIZE, SIZE)
    assert plugin.forecast(precip, None, 3, 4, model="persistence").shape == (4, 3, SIZE, SIZE)
    tiny = convlstm.create_model("encoder_forecaster_tiny")
    assert plugin.forecast(precip, None, 2, model=tiny).shape == (2, SIZE, SIZE)
    assert plugin.forecast(precip, None, 2, 3, model=tiny).shape == (3, 2, SIZE, SIZE)
    assert plugin.forecast(precip, None, [1, 2.0, 5], 1, model=tiny).shape == (1, 3, SIZE, SIZE)


def test_a_list_of_timesteps_picks_those_steps() -> None:
    precip = rain_field()
    model = Recorder(ramp=1.0)
    out = plugin.forecast(precip, None, [1, 3, 4], model=model, model_units="mm/h")
    for row, step in enumerate([1, 3, 4]):
        np.testing.assert_allclose(out[row], precip[-1] + step, rtol=1e-6)
    assert model.seen[-1].shape == (1, 4, 1, SIZE, SIZE)  # (B, T, C, H, W)


def test_persistence_gives_back_the_last_frame_in_mm_per_hour() -> None:
    precip = rain_field()
    out = plugin.forecast(precip, np.zeros((2, SIZE, SIZE)), 2, model="persistence")
    np.testing.assert_allclose(out, np.stack([precip[-1]] * 2), rtol=1e-5, atol=0)
    assert out.dtype == np.float64
    assert plugin.forecast(precip.astype(np.float32), None, 1, model="persistence").dtype == np.float32


# --- units -----------------------------------------------------------------------------------------------------------


def _dbz(rain: np.ndarray, a: float = 200.0, b: float = 1.6) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(rain > 0, 10 * np.log10(a * np.maximum(rain, 1e-12) ** b), -15.0)


@pytest.mark.parametrize(
    ("name", "convert", "metadata"),
    [
        ("mm/h", lambda r: r, {"unit": "mm/h", "transform": None, "threshold": 0.1, "zerovalue": 0.0}),
        ("mm in 5 min", lambda r: r * 5 / 60, {"unit": "mm", "transform": None, "accutime": 5.0}),
        (
            "dBR",
            lambda r: np.where(r > 0, 10 * np.log10(np.maximum(r, 1e-12)), -15.0),
            {"unit": "mm/h", "transform": "dB", "threshold": -10.0, "zerovalue": -15.0},
        ),
        ("Z (linear)", lambda r: 200 * r**1.6, {"unit": "dBZ", "transform": None, "zr_a": 200.0, "zr_b": 1.6}),
        (
            "dBZ",
            _dbz,
            {"unit": "dBZ", "transform": "dB", "threshold": 0.0, "zerovalue": -15.0, "zr_a": 200.0, "zr_b": 1.6},
        ),
    ],
)
def test_units_round_trip_through_a_pixel_model(name: str, convert: object, metadata: dict) -> None:
    precip = convert(rain_field())  # type: ignore[operator]
    out = plugin.forecast(precip, None, 2, model="persistence", metadata=metadata)
    np.testing.assert_allclose(out, np.stack([precip[-1]] * 2), rtol=1e-5, atol=1e-4, err_msg=name)
    assert (out[:, 0, 0] == precip[-1, 0, 0]).all()  # dry stays exactly the zerovalue


def test_reflectivity_reaches_a_pixel_model_unchanged_and_rain_rate_goes_through_hko7() -> None:
    dbz = np.full((2, SIZE, SIZE), 30.0)
    model = Recorder()
    plugin.forecast(dbz, None, 1, model=model, metadata={"unit": "dBZ", "transform": "dB"})  # no zr: HKO-7 both ways
    np.testing.assert_allclose(model.seen[-1], torch.full_like(model.seen[-1], (30.0 + 10) / 70), rtol=1e-6)
    plugin.forecast(np.ones((2, SIZE, SIZE)), None, 1, model=model)
    np.testing.assert_allclose(model.seen[-1], torch.full_like(model.seen[-1], rain_rate_to_pixel(1.0)), rtol=1e-6)
    plugin.forecast(np.ones((2, SIZE, SIZE)), None, 1, model=model, zr_relation="marshall_palmer")
    expected = rain_rate_to_pixel(1.0, "marshall_palmer")
    np.testing.assert_allclose(model.seen[-1], torch.full_like(model.seen[-1], expected), rtol=1e-6)


def test_reflectivity_above_the_pixel_scale_comes_back_at_60_dbz() -> None:
    dbz = np.full((2, SIZE, SIZE), 65.0)
    out = plugin.forecast(dbz, None, 1, model="persistence", metadata={"unit": "dBZ", "transform": "dB"})
    np.testing.assert_allclose(out, 60.0, rtol=1e-5)


def test_model_units_follow_the_models_card_or_config() -> None:
    steps = convlstm.create_model("steps", units="mm/h", members=2, cascade_levels=2)
    assert plugin._resolve_model_units(steps, None, None) == "mm/h"
    assert plugin._resolve_model_units(Recorder(), None, None) == "pixel"
    card = convlstm.models.ModelCard(name="x", model="recorder", summary="", data=[], units="mm/h")
    assert plugin._resolve_model_units(Recorder(), None, card) == "mm/h"  # a card says what its model reads


# --- coverage, context -----------------------------------------------------------------------------------------------


def test_no_coverage_is_dry_for_the_model_and_nan_in_every_step_and_member() -> None:
    precip = rain_field()
    precip[0, :, :2] = np.nan  # an old frame lacks the left columns
    precip[-1, 5, 5] = np.nan  # the last frame lacks a pixel inside the rain
    model = Recorder()
    out = plugin.forecast(precip, None, 2, 3, model=model)
    assert np.isnan(out[:, :, :, :2]).all() and np.isnan(out[:, :, 5, 5]).all()
    assert np.isfinite(out[:, :, :, 2:][:, :, ~np.isin(np.arange(SIZE), [5])]).all()
    context = model.seen[0]
    assert torch.isfinite(context).all()
    assert (context[0, 0, 0, :, :2] == 0).all() and context[0, -1, 0, 5, 5] == 0


def test_the_model_reads_its_last_context_frames() -> None:
    precip = rain_field(frames=5)
    model = Recorder()
    plugin.forecast(precip, None, 1, model=model, context_frames=2)
    assert model.seen[-1].shape[1] == 2
    model.context_frames = 3  # type: ignore[assignment]
    plugin.forecast(precip, None, 1, model=model)
    np.testing.assert_allclose(model.seen[-1][0, :, 0].double(), rain_rate_to_pixel(precip[-3:]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"precip must have at least context_frames=3 frames.*\(2, 16, 16\)"):
        plugin.forecast(precip[:2], None, 1, model=model)


# --- ensembles -------------------------------------------------------------------------------------------------------


def test_a_deterministic_model_gives_a_perturbed_ensemble_with_the_control_first() -> None:
    precip = rain_field()
    tiny = convlstm.create_model("encoder_forecaster_tiny")
    control = plugin.forecast(precip, None, 2, model=tiny)
    members = plugin.forecast(precip, None, 2, 3, model=tiny, seed=5)
    np.testing.assert_allclose(members[0], control, rtol=1e-5)
    assert not np.allclose(members[1], members[2])
    np.testing.assert_array_equal(plugin.forecast(precip, None, 2, 3, model=tiny, seed=5), members)
    assert not np.allclose(plugin.forecast(precip, None, 2, 3, model=tiny, seed=6)[1], members[1])


def test_a_model_with_its_own_ensemble_gives_its_members() -> None:
    precip = rain_field()
    out = plugin.forecast(precip, None, 2, 3, model=OwnEnsemble(3), model_units="mm/h")
    for k in range(3):
        np.testing.assert_allclose(out[k], np.stack([precip[-1] + k] * 2), rtol=1e-6)
    with pytest.raises(ValueError, match="n_ens_members must be the size of the model's own ensemble, 3, got 4"):
        plugin.forecast(precip, None, 2, 4, model=OwnEnsemble(3))


# --- the model argument ----------------------------------------------------------------------------------------------


def test_a_saved_directory_runs_the_saved_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tiny = convlstm.create_model("encoder_forecaster_tiny")
    tiny.save_pretrained(tmp_path / "model")
    precip = rain_field()
    expected = plugin.forecast(precip, None, 2, model=tiny)
    np.testing.assert_allclose(plugin.forecast(precip, None, 2, model=tmp_path / "model"), expected, rtol=1e-6)
    np.testing.assert_allclose(plugin.forecast(precip, None, 2, model=str(tmp_path / "model")), expected, rtol=1e-6)


def test_a_name_with_weights_warns_that_they_are_untrained(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=plugin.__name__):
        plugin.forecast(rain_field(), None, 1, model="persistence")
        assert "untrained" not in caplog.text
        plugin.forecast(rain_field(), None, 1, model="encoder_forecaster_tiny")
    assert "untrained weights" in caplog.text


def test_without_a_model_the_shipped_radar_nowcast_runs_in_rain_rate_on_its_4_frames() -> None:
    assert plugin.DEFAULT_MODEL == "radar-nowcast"
    field = rain_field(frames=6)
    field[:4] = 0.0  # frames the shipped model must not read (it reads its card's 4)
    out = nowcasts.get_method("convlstm")(field, None, 3)
    shipped = convlstm.from_pretrained("radar-nowcast").eval()
    with torch.no_grad():
        expected = shipped(torch.from_numpy(field[-4:]).float()[None, :, None], 3)[0, :, 0].numpy()
    assert out.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)  # mm/h in and out, as its card says


def test_no_model_and_no_default_asks_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "DEFAULT_MODEL", None)
    with pytest.raises(ValueError, match="model is needed: DEFAULT_MODEL is None"):
        nowcasts.get_method("convlstm")(rain_field(), None, 3)
    monkeypatch.setattr(plugin, "DEFAULT_MODEL", "persistence")
    assert plugin.forecast(rain_field(), None, 3).shape == (3, SIZE, SIZE)


# --- errors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "keywords", "message"),
    [
        ((np.zeros((SIZE, SIZE)), None, 3), {}, r"precip must have shape \(T, m, n\).*got \(16, 16\)"),
        (([[[0.0]]], None, 3), {}, "precip must be a numpy array"),
        ((np.full((2, SIZE, SIZE), np.inf), None, 3), {}, r"precip must be finite or NaN"),
        ((rain_field(), np.zeros((2, 8, 8)), 3), {}, r"velocity must be None or an array \(2, m, n\)"),
        ((rain_field(), None, 0), {}, "timesteps must be an int >= 1, got 0"),
        ((rain_field(), None, [1, 1.5]), {}, r"timesteps must be whole steps.*got 1.5"),
        ((rain_field(), None, [3, 2]), {}, "timesteps must be increasing steps >= 1"),
        ((rain_field(), None, []), {}, "timesteps must be an int >= 1 or a non-empty list"),
        ((rain_field(), None, 3, 0), {}, "n_ens_members must be an int >= 1, got 0"),
        ((rain_field(), None, 3), {"metadata": {"unit": "in/h"}}, r"metadata\['unit'\] must be one of"),
        ((rain_field(), None, 3), {"metadata": {"unit": "dBZ"}}, r"metadata\['transform'\] must be given"),
        ((rain_field(), None, 3), {"metadata": {"unit": "mm/h", "transform": "BoxCox"}}, "to_rainrate"),
        ((rain_field(), None, 3), {"metadata": {"unit": "mm", "transform": None}}, r"metadata\['accutime'\]"),
        ((rain_field(), None, 3), {"model_units": "dBZ"}, "model_units must be one of"),
        ((rain_field(), None, 3), {"zr_relation": (1.0,)}, "zr_relation: relation must be a pair"),
        ((rain_field(), None, 3), {"model": Recorder(channels=3)}, "model must read one channel.*in_channels=3"),
    ],
)
def test_wrong_arguments_are_named(arguments: tuple, keywords: dict, message: str) -> None:
    keywords = {"model": "persistence", **keywords}
    with pytest.raises(ValueError, match=message):
        plugin.forecast(*arguments, **keywords)


def test_an_unknown_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"registered name.*'no_such_model'"):
        plugin.forecast(rain_field(), None, 1, model="no_such_model")
    with pytest.raises(ValueError, match=r"model must be an nn\.Module"):
        plugin.forecast(rain_field(), None, 1, model=3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        plugin.forecast(rain_field(), None, 1, model=tmp_path)  # a directory, but no saved model in it
