"""`convlstm nowcast` and the models shipped in the package: small FMI PGM files in, a CF netCDF forecast out, equal
to the model's forecast on the same context (untrained, pysteps' extrapolation) on the files' own grid; errors that
name the argument; shipped models found by name through a package folder stood in by a temporary one; and every
model really shipped loads and forecasts a fixture."""

import contextlib
import io
import random
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from pysteps.io import get_method
from pysteps.utils.conversion import to_rainrate
from safetensors import safe_open

import convlstm
from convlstm.cli.main import main
from convlstm.data.formats.radar_archive import grid_coordinates
from convlstm.experiment.nowcasting import file_time
from convlstm.models import DataSource, ModelCard, create_model, list_pretrained, read_model_card
from convlstm.models import pretrained as pretrained_module
from convlstm.models.pretrained import MAX_SHIPPED_BYTES, MODEL_CARD_FILE
from tests.radar_files import fmi_codes, knmi_counts, write_fmi, write_knmi

T0 = datetime(2021, 7, 1, 12, 0)
STEP = timedelta(minutes=5)
SHAPE = (32, 32)


def fmi_files(root: Path, frames: int = 5, start: datetime = T0) -> list[Path]:
    """FMI composites 5 minutes apart: a cell drifting east, a corner without coverage."""
    return [write_fmi(root, start + k * STEP, fmi_codes(k, shape=SHAPE)) for k in range(frames)]


def rain_rate(path: Path) -> tuple[np.ndarray, dict]:
    precip, _, metadata = get_method("fmi_pgm", "importer")(str(path), gzipped=True)
    rain, metadata = to_rainrate(np.ma.filled(np.ma.asarray(precip, dtype=float), np.nan), metadata)
    return np.asarray(rain, dtype=np.float32), metadata


def saved_model(folder: Path, card: ModelCard | None = None) -> Path:
    """An untrained extrapolation_nowcast saved as a model directory (its forecast is pysteps' extrapolation)."""
    model = create_model("extrapolation_nowcast", base_channels=4, depth=1, motion_frames=3)
    model.save_pretrained(folder)
    if card is not None:
        card.write(folder)
    return folder


def card(**fields: object) -> ModelCard:
    values: dict = {
        "name": "tiny-test",
        "model": "extrapolation_nowcast",
        "summary": "An untrained extrapolation_nowcast for tests.",
        "data": [DataSource("fixture", "the tests", "none: generated", "")],
        "context_frames": 4,
        "lead_times": 3,
        "training": "none",
        "held_out_scores": {"tiny-test": {"csi@1": 0.5}, "optical_flow": {"csi@1": 0.5}},
        "held_out": "nothing",
        "limits": ["untrained"],
    }
    return ModelCard(**{**values, **fields})


def pysteps_extrapolation(frames: np.ndarray, horizon: int) -> np.ndarray:
    """Lucas-Kanade on the frames, the last one advected by pysteps, NaN (from beyond the edge) -> 0."""
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps import motion, nowcasts
    velocity = motion.get_method("lucaskanade")(frames.astype(np.float64))
    forecast = nowcasts.get_method("extrapolation")(frames[-1].astype(np.float64), velocity, horizon)
    forecast[np.isnan(forecast)] = 0.0
    return forecast


@pytest.fixture
def no_shipped_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The package's folder of shipped models stood in by an empty temporary one; returns it."""
    root = tmp_path / "shipped"
    root.mkdir()
    monkeypatch.setattr(pretrained_module, "_root", lambda: root)
    return root


def test_nowcast_writes_the_models_forecast_as_cf_netcdf_on_the_source_grid(tmp_path: Path) -> None:
    files = fmi_files(tmp_path / "radar", frames=5)
    model_dir = saved_model(tmp_path / "model")
    out = tmp_path / "out" / "forecast.nc"
    shuffled = [str(f) for f in random.Random(0).sample(files, len(files))]  # sorted by the times in their names
    assert main(["nowcast", *shuffled, "--out", str(out), "--model", str(model_dir), "--lead-times", "4"]) == 0
    assert not list(out.parent.glob("*.tmp"))

    # What the model gives on the last 3 frames (its motion_frames), read as pysteps reads them.
    read = [rain_rate(path) for path in files[-3:]]
    frames = np.stack([r for r, _ in read])  # (3, H, W) mm/h, NaN without coverage
    metadata = read[-1][1]
    model = convlstm.from_pretrained(model_dir).eval()
    context = torch.from_numpy(np.nan_to_num(frames))[None, :, None]
    with torch.no_grad():
        expected = model(context, horizon=4)[0, :, 0].numpy()
    no_coverage = np.isnan(frames[-1])
    assert no_coverage.any() and (expected > 1).any()
    # Untrained, the model is pysteps' extrapolation of the same context.
    np.testing.assert_allclose(expected, pysteps_extrapolation(np.nan_to_num(frames), 4), rtol=1e-5, atol=1e-5)

    with xr.open_dataset(out) as forecast:
        values = forecast["precip_intensity"]
        assert values.dims == ("time", "y", "x") and values.shape == (4, *SHAPE)
        np.testing.assert_allclose(values.values[:, ~no_coverage], expected[:, ~no_coverage], rtol=1e-6)
        assert np.isnan(values.values[:, no_coverage]).all()
        assert values.attrs["units"] == "mm h-1" and values.attrs["standard_name"] == "lwe_precipitation_rate"
        last = T0 + 4 * STEP
        valid = [np.datetime64(last + k * STEP, "ns") for k in range(1, 5)]
        assert list(forecast["time"].values) == valid
        assert forecast["forecast_reference_time"].values == np.datetime64(last, "ns")
        assert forecast["lead_time"].attrs["standard_name"] == "forecast_period"
        x, y = grid_coordinates(metadata, SHAPE)
        np.testing.assert_allclose(forecast["x"].values, x)
        np.testing.assert_allclose(forecast["y"].values, y)
        assert forecast["y"].values[0] > forecast["y"].values[-1]  # yorigin "upper": row 0 is the north
        assert forecast["x"].attrs["standard_name"] == "projection_x_coordinate"
        assert forecast["x"].attrs["units"] == metadata["cartesian_unit"] == "m"
        mapping = forecast[values.attrs["grid_mapping"]]
        assert mapping.attrs["grid_mapping_name"] == "polar_stereographic"
        import pyproj

        assert pyproj.CRS.from_wkt(mapping.attrs["crs_wkt"]) == pyproj.CRS.from_proj4(metadata["projection"])
        assert forecast.attrs["Conventions"] == "CF-1.7"
        assert forecast.attrs["model"] == str(model_dir) and "extrapolation_nowcast" in forecast.attrs["source"]
        assert forecast.attrs["input_files"] == ", ".join(f.name for f in files[-3:])


def test_the_netcdf_forecast_of_radar_files_has_their_latitude_and_longitude(tmp_path: Path) -> None:
    import cf_xarray  # noqa: F401  (registers the .cf accessor)
    import pyproj

    files = fmi_files(tmp_path / "radar", frames=3)
    out = tmp_path / "forecast.zarr"  # the same layout, as a zarr store
    assert main(["nowcast", *map(str, files), "--out", str(out), "--model", str(saved_model(tmp_path / "m"))]) == 0
    metadata = rain_rate(files[-1])[1]
    with xr.open_zarr(out) as forecast:
        crs = pyproj.CRS.from_wkt(forecast.cf["grid_mapping"].attrs["crs_wkt"])
        assert crs == pyproj.CRS.from_proj4(metadata["projection"])
        lat, lon = forecast["precip_intensity"].cf["latitude"], forecast["precip_intensity"].cf["longitude"]
        x, y = forecast["x"].values, forecast["y"].values
        expected_lon, expected_lat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(
            x[5], y[20]
        )
        np.testing.assert_allclose((lat.values[20, 5], lon.values[20, 5]), (expected_lat, expected_lon), atol=1e-9)
        assert 55 < float(lat.min()) < float(lat.max()) < 75  # FMI's grid lies over Finland


def test_the_forecast_of_an_mlcast_store_is_a_store_in_its_convention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cf_xarray  # noqa: F401  (registers the .cf accessor)

    from tests.data.formats.test_mlcast import TIMES, rain, write_mlcast_store

    store = write_mlcast_store(tmp_path / "radar.zarr", size=SHAPE[0])
    model_dir = saved_model(tmp_path / "model")  # reads 3 frames (its motion_frames)
    model = convlstm.from_pretrained(model_dir).eval()
    truth = rain(SHAPE[0])  # the store's rain rates (mm/h), NaN in rows 0 and 1

    def expected(last: int) -> np.ndarray:
        context = torch.from_numpy(np.nan_to_num(truth[last - 2 : last + 1]))[None, :, None]
        with torch.no_grad():
            return model(context, horizon=3)[0, :, 0].numpy()

    out = tmp_path / "forecast.zarr"
    assert main(["nowcast", str(store), "--out", str(out), "--model", str(model_dir), "--lead-times", "3"]) == 0
    last = np.datetime64(TIMES[-1].to_datetime64(), "ns")
    with xr.open_zarr(out) as forecast:
        rr = forecast["rr"]
        assert rr.dims == ("time", "y", "x") and rr.attrs["standard_name"] == "rainfall_flux"
        np.testing.assert_allclose(rr.values[:, 2:], expected(len(TIMES) - 1)[:, 2:], rtol=1e-6)
        assert np.isnan(rr.values[:, :2]).all()  # no coverage in the last frame
        assert forecast["forecast_reference_time"].values == last
        np.testing.assert_array_equal(forecast["time"].values, last + np.timedelta64(5, "m") * np.arange(1, 4))
        assert forecast.cf.grid_mapping_names == {"lambert_azimuthal_equal_area": ["crs"]}
        assert forecast.attrs["model"] == str(model_dir) and forecast.attrs["input_store"] == str(store)
    # From the frames ending at an earlier time, into netCDF.
    earlier = tmp_path / "earlier.nc"
    argv = ["nowcast", str(store), "--model", str(model_dir), "--lead-times", "3", "--init-time", str(TIMES[-2])]
    assert main([*argv, "--out", str(earlier)]) == 0
    with xr.open_dataset(earlier) as forecast:
        np.testing.assert_allclose(forecast["rr"].values[:, 2:], expected(len(TIMES) - 2)[:, 2:], rtol=1e-6)

    def error(*args: str) -> str:
        assert main(["nowcast", str(store), "--model", str(model_dir), "--out", str(tmp_path / "e.zarr"), *args]) == 2
        err = capsys.readouterr().err  # the source's INFO log lines, then the error
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("convlstm nowcast: error: "), err
        return err.strip().splitlines()[-1]

    # Slot 8 of 2023's 5-minute frames is missing: the frame after it has no 3 consecutive frames ending there.
    after_gap = str(TIMES[6 + 8])
    assert "has no 3 consecutive frames ending then; the last ones before it end at 2023-01-01T00:35" in error(
        "--init-time", after_gap
    )
    assert "--importer: apply to radar files, not to the mlcast store" in error("--importer", "fmi_pgm")
    assert "--init-time must be an ISO time" in error("--init-time", "yesterday")
    assert "--out must be a netCDF file (.nc) or a zarr store (.zarr)" in error("--out", str(tmp_path / "f.h5"))


def test_knmi_files_with_the_importer_named_keep_their_grid_in_km(tmp_path: Path) -> None:
    files = [str(write_knmi(tmp_path, T0 + k * STEP, knmi_counts(k))) for k in range(3)]
    model_dir = saved_model(tmp_path / "model")
    out = tmp_path / "forecast.nc"
    kwargs = '{"accutime": 5, "qty": "ACRR", "pixelsize": 1000.0}'
    argv = ["nowcast", *files, "--out", str(out), "--model", str(model_dir), "--importer", "knmi_hdf5"]
    assert main([*argv, "--importer-kwargs", kwargs]) == 0
    with xr.open_dataset(out) as forecast:
        assert forecast["precip_intensity"].shape == (6, 20, 18)  # the model's default horizon
        assert forecast["x"].attrs["units"] == "km" and forecast["y"].attrs["units"] == "km"
        np.testing.assert_allclose(forecast["x"].values[:2], [0.5, 1.5])
        np.testing.assert_allclose(forecast["y"].values[:2], [-3650.5, -3651.5])  # row 0 north, 1 km pixels
        assert np.isnan(forecast["precip_intensity"].values[:, :, :2]).all()  # no coverage on the left
        assert forecast.attrs["institution"].startswith("KNMI")


def test_a_runs_model_takes_its_recipes_frames_and_units(tmp_path: Path) -> None:
    """runs/<name>/model of a recipe that trains on HKO-7 pixels: its context and target frames from the recipe,
    the rain rates converted to pixels on the way in and back to mm/h on the way out."""
    import yaml

    from convlstm.experiment import load_recipe
    from convlstm.units import pixel_to_rain_rate, rain_rate_to_pixel

    run = tmp_path / "runs" / "radar"
    recipe = load_recipe("nowcasting", ["data.context_frames=3", "data.target_frames=2"])
    assert recipe.task.args["units"] == "pixel"
    model_dir = saved_model(run / "model")
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    files = fmi_files(tmp_path / "radar", frames=4)
    out = tmp_path / "forecast.nc"
    assert main(["nowcast", *map(str, files), "--out", str(out), "--model", str(model_dir)]) == 0
    frames = np.stack([np.nan_to_num(rain_rate(path)[0]) for path in files[-3:]])
    context = torch.from_numpy(rain_rate_to_pixel(frames, "hko7").astype(np.float32))[None, :, None]
    with torch.no_grad():
        expected = pixel_to_rain_rate(convlstm.from_pretrained(model_dir).eval()(context, horizon=2)[0, :, 0].numpy())
    with xr.open_dataset(out) as forecast:
        values = forecast["precip_intensity"].values
    assert values.shape == (2, *SHAPE)
    covered = ~np.isnan(values[0])
    np.testing.assert_allclose(values[:, covered], expected[:, covered], rtol=1e-5)


def test_grid_coordinates_follow_yorigin() -> None:
    grid = {"x1": 0.0, "x2": 40.0, "y1": 100.0, "y2": 130.0}
    x, y = grid_coordinates({**grid, "yorigin": "lower"}, (3, 4))
    np.testing.assert_allclose(x, [5, 15, 25, 35])
    np.testing.assert_allclose(y, [105, 115, 125])
    _, y = grid_coordinates({**grid, "yorigin": "upper"}, (3, 4))
    np.testing.assert_allclose(y, [125, 115, 105])
    with pytest.raises(ValueError, match=r"lacks the grid's \['yorigin'\]"):
        grid_coordinates(grid, (3, 4))


def test_file_times_come_from_the_names_of_every_pysteps_data_archive() -> None:
    names = {
        "201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz": datetime(2016, 9, 28, 14, 45),
        "RAD_NL25_RAP_5min_201008260735.h5": datetime(2010, 8, 26, 7, 35),
        "2_20180616_100600.prcp-cscn.nc": datetime(2018, 6, 16, 10, 6),
        "T_PAAH21_C_EUOC_20180824180000.hdf": datetime(2018, 8, 24, 18, 0),
        "AQC161932100V_00005.801.gif": datetime(2016, 7, 11, 21, 0),  # day 193 of 2016
        "S_NWC_CRR_MSG4_Europe-VISIR_20180601T120000Z.nc": datetime(2018, 6, 1, 12, 0),
    }
    for name, when in names.items():
        assert file_time(name) == when, name
    assert file_time("composite.h5") is None


@pytest.mark.usefixtures("no_shipped_models")
def test_errors_name_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(f) for f in fmi_files(tmp_path / "radar", frames=3)]
    model_dir = str(saved_model(tmp_path / "model"))
    out = str(tmp_path / "forecast.nc")

    def error(*args: str) -> str:
        assert main(["nowcast", *args, "--out", out]) == 2
        message = capsys.readouterr().err.strip()
        assert len(message.splitlines()) == 1 and "Traceback" not in message, message
        return message

    assert "reads the last 3 frames, got 2 file(s)" in error(*files[:2], "--model", model_dir)
    assert "'nope' is not a pysteps importer" in error(*files, "--model", model_dir, "--importer", "nope")
    assert "fmi_pgm" in error(*files, "--model", model_dir, "--importer", "nope")  # pysteps' list of importers
    broken = Path(files[-1])
    broken.write_bytes(broken.read_bytes()[:40])
    message = error(*files, "--model", model_dir)
    assert "could not read" in message and broken.name in message and "fmi_pgm" in message
    ambiguous = [tmp_path / f"RAD_NL25_RAP_5min_20210701120{k}.h5" for k in range(3)]
    for path in ambiguous:
        path.write_bytes(b"")
    message = error(*map(str, ambiguous), "--model", model_dir)
    assert "'.h5' files are read by several pysteps importers" in message and "knmi_hdf5, odim_hdf5" in message
    unknown = tmp_path / "201609281445.xyz"
    unknown.write_bytes(b"")
    assert "no pysteps importer is known for '.xyz'" in error(str(unknown), "--model", model_dir)
    assert "not found" in error(str(tmp_path / "missing.pgm.gz"), "--model", model_dir)
    message = error(*files)  # the default model, not shipped yet
    assert "radar-nowcast" in message and "not shipped" in message and "--model DIR" in message
    message = error(*files, "--model", "no-such-model")
    assert "not found" in message and "shipped: none yet" in message


def test_files_must_be_one_time_step_apart_with_times_in_their_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = str(saved_model(tmp_path / "model"))
    files = fmi_files(tmp_path / "radar", frames=4)
    gap = [str(f) for i, f in enumerate(files) if i != 2]
    assert main(["nowcast", *gap, "--out", str(tmp_path / "a.nc"), "--model", model_dir]) == 2
    assert "not one time step (0:05:00) apart" in capsys.readouterr().err
    anonymous = files[0].with_name("composite.pgm.gz")
    anonymous.write_bytes(files[0].read_bytes())
    assert (
        main(["nowcast", str(anonymous), *map(str, files[1:]), "--out", str(tmp_path / "b.nc"), "--model", model_dir])
        == 2
    )
    assert "cannot tell the time of" in capsys.readouterr().err


def test_a_model_shipped_in_the_package_loads_by_name(no_shipped_models: Path, tmp_path: Path) -> None:
    assert convlstm.list_pretrained() == []
    saved_model(no_shipped_models / "tiny-test", card())
    (no_shipped_models / "not-a-model").mkdir()  # a folder without weights is not a shipped model
    assert convlstm.list_pretrained() == ["tiny-test"]
    shipped = convlstm.from_pretrained("tiny-test")
    again = convlstm.from_pretrained(no_shipped_models / "tiny-test")  # a directory, as before
    theirs = again.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in shipped.state_dict().items())
    with pytest.raises(FileNotFoundError, match=r"'nope' not found: .*shipped: tiny-test\)"):
        convlstm.from_pretrained("nope")
    read = read_model_card("tiny-test")
    assert read == card()
    text = (no_shipped_models / "tiny-test" / MODEL_CARD_FILE).read_text()
    for section in ("## Data and licences", "## Training budget", "## Held-out scores", "## Limits", "5 minutes"):
        assert section in text
    assert read_model_card(saved_model(tmp_path / "bare")) is None


def test_nowcast_takes_context_lead_times_and_time_step_from_the_model_card(
    no_shipped_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved_model(no_shipped_models / "tiny-test", card())
    files = [str(f) for f in fmi_files(tmp_path / "radar", frames=5)]
    out = tmp_path / "forecast.nc"
    assert main(["nowcast", *files, "--out", str(out), "--model", "tiny-test"]) == 0
    with xr.open_dataset(out) as forecast:
        assert forecast.sizes["time"] == 3  # the card's lead times
        assert forecast.attrs["input_files"] == ", ".join(Path(f).name for f in files[-4:])  # its context frames
    saved_model(no_shipped_models / "slow", card(name="slow", timestep_minutes=15.0))
    assert main(["nowcast", *files, "--out", str(out), "--model", "slow"]) == 2
    assert "forecasts 15-minute steps (its model card), the files are 5 minutes apart" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- the models really shipped
SHIPPED = list_pretrained() or [
    pytest.param(None, marks=pytest.mark.skip(reason="no model is shipped in src/convlstm/models/pretrained/ yet"))
]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_loads_and_forecasts_a_fixture(name: str, tmp_path: Path) -> None:
    folder = Path(str(pretrained_module._root())) / name
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= MAX_SHIPPED_BYTES, f"{weights} is over 10 MB"
    with safe_open(str(weights), framework="pt") as f:  # safetensors, nothing to unpickle
        assert list(f.keys())
    model_card = read_model_card(name)
    assert model_card is not None, f"{folder} has no {MODEL_CARD_FILE}"
    assert model_card.name == name and model_card.units == "mm/h"
    for field in ("summary", "data", "training", "held_out_scores", "held_out", "limits"):
        assert getattr(model_card, field), f"the card of {name} leaves {field} empty"
    assert all(source.licence for source in model_card.data)
    model = convlstm.from_pretrained(name)
    assert type(model).family == model_card.model
    fresh = type(model).from_config(model.config).state_dict()  # trained weights, not a fresh initialisation
    assert any(not torch.equal(value, fresh[key]) for key, value in model.state_dict().items())
    step = timedelta(minutes=model_card.timestep_minutes)
    files = [write_fmi(tmp_path, T0 + k * step, fmi_codes(k, shape=(64, 64))) for k in range(model_card.context_frames)]
    out = tmp_path / "forecast.nc"
    assert main(["nowcast", *map(str, files), "--out", str(out), "--model", name]) == 0
    with xr.open_dataset(out) as forecast:
        values = forecast["precip_intensity"].values
    assert values.shape == (model_card.lead_times, 64, 64)
    covered = values[:, ~np.isnan(values[0])]
    assert covered.size and np.isfinite(covered).all() and (covered >= 0).all()
