"""Radar archives through pysteps' I/O: small FMI PGM and KNMI HDF5 files written in their real layouts, read as
pysteps reads them, windows that never span a missing step, whole events to each split, rain-biased patches with
their importance weights, and named errors for bad descriptions."""

import logging
import pickle
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from pysteps.io import get_method
from pysteps.utils.conversion import to_rainrate

from convlstm.data import sources
from convlstm.data.core.sampling import RainBiasedPatches
from convlstm.data.core.transforms import flip_rotate
from convlstm.data.formats.radar_archive import RadarArchiveSequences
from convlstm.units import rain_rate_to_pixel
from tests.radar_files import FMI_SHAPE, KNMI_SHAPE, fmi_codes, knmi_counts, write_fmi, write_knmi

T0 = datetime(2021, 7, 1, 12, 0)
STEP = timedelta(minutes=5)

#: pystepsrc's "fmi" and "knmi" data_sources entries as pysteps ships them, root_path aside.
FMI = {
    "root_path": "./fmi",
    "path_fmt": "%Y%m%d",
    "fn_pattern": "%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1",
    "fn_ext": "pgm.gz",
    "importer": "fmi_pgm",
    "timestep": 5,
    "importer_kwargs": {"gzipped": True},
}
KNMI = {
    "root_path": "./knmi",
    "path_fmt": "%Y/%m",
    "fn_pattern": "RAD_NL25_RAP_5min_%Y%m%d%H%M",
    "fn_ext": "h5",
    "importer": "knmi_hdf5",
    "timestep": 5,
    "importer_kwargs": {"accutime": 5, "qty": "ACRR", "pixelsize": 1000.0},
}


def write_fmi_event(root: Path, start: datetime, frames: int) -> list[Path]:
    return [write_fmi(root, start + k * STEP, fmi_codes(k)) for k in range(frames)]


def write_knmi_event(root: Path, start: datetime, frames: int) -> list[Path]:
    return [write_knmi(root, start + k * STEP, knmi_counts(k)) for k in range(frames)]


def event(archive: str, start: datetime, frames: int) -> dict[str, Any]:
    return {"archive": archive, "start": start.isoformat(sep=" "), "end": (start + (frames - 1) * STEP).isoformat()}


def write_radar_archive(folder: Path, *, frames: int = 6) -> dict[str, Any]:
    """Three FMI events a day apart, one per split, as a recipe's data.args (patches of 16 x 16 in HKO-7 pixels)."""
    starts = [T0 + timedelta(days=d) for d in range(3)]
    for start in starts:
        write_fmi_event(folder, start, frames)
    return {
        "root": str(folder),
        "archives": {"fmi": FMI},
        "events": {f"fmi_{k}": event("fmi", start, frames) for k, start in enumerate(starts)},
        "splits": {"train": ["fmi_0"], "val": ["fmi_1"], "test": ["fmi_2"]},
        "units": "pixel",
        "patch_size": 16,
    }


def pysteps_rain_rate(importer: str, path: Path, **kwargs: Any) -> np.ndarray:
    precip, _, metadata = get_method(importer, "importer")(str(path), **kwargs)
    rain, _ = to_rainrate(np.ma.filled(np.ma.asarray(precip, dtype=float), np.nan), metadata)
    return np.asarray(rain, dtype=np.float32)


def both(root: Path, **kwargs: Any) -> RadarArchiveSequences:
    """One FMI event of 6 frames and one KNMI event of 5, every event in the split "all"."""
    events = {"fmi_a": event("fmi", T0, 6), "knmi_a": event("knmi", T0, 5)}
    options: dict[str, Any] = {"context_frames": 2, "target_frames": 2, **kwargs}
    return RadarArchiveSequences(root, "all", archives={"fmi": FMI, "knmi": KNMI}, events=events, **options)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_fmi_event(tmp_path, T0, 6)
    write_knmi_event(tmp_path, T0, 5)
    return tmp_path


def test_files_of_two_formats_come_out_as_pysteps_reads_them(root: Path) -> None:
    data = both(root)
    assert len(data) == 3 + 2  # windows of 4 frames: 3 in the FMI event, 2 in the KNMI one
    fmi = data[1]  # frames 1 to 4 of the FMI event
    assert fmi["context"].shape == (2, 1, *FMI_SHAPE) and fmi["target"].shape == (2, 1, *FMI_SHAPE)
    path = root / "fmi" / "20210701" / "202107011205_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    expected = pysteps_rain_rate("fmi_pgm", path, gzipped=True)
    covered = ~np.isnan(expected)
    assert (~covered).sum() == 15 and expected[covered].max() > 1.0  # the corner; a cell of several mm/h
    np.testing.assert_array_equal(fmi["context"][0, 0].numpy()[covered], expected[covered])
    assert (fmi["context_mask"][0, 0].numpy() == covered).all()
    assert (fmi["context"][0, 0].numpy()[~covered] == 0).all()  # NaN became 0, masked
    knmi = data[4]  # frames 1 to 4 of the KNMI event
    assert knmi["target"].shape == (2, 1, *KNMI_SHAPE)
    expected = pysteps_rain_rate("knmi_hdf5", root / "knmi" / "2021/07" / "RAD_NL25_RAP_5min_202107011220.h5")
    covered = ~np.isnan(expected)
    assert (covered[:, :2] == 0).all() and covered[:, 2:].all()
    np.testing.assert_array_equal(knmi["target"][1, 0].numpy()[covered], expected[covered])  # mm in 5 min * 12
    assert (knmi["mask"][1, 0].numpy() == covered).all()
    np.testing.assert_array_equal(data.window_times(4), np.arange(1, 5) * np.timedelta64(5, "m") + np.datetime64(T0))
    assert data.events[0].metadata["projection"].startswith("+proj=stere")
    pixels = both(root, units="pixel")[4]["target"][1, 0].numpy()
    np.testing.assert_allclose(pixels[covered], rain_rate_to_pixel(expected[covered], "hko7"), rtol=1e-6)


def test_no_window_spans_a_missing_step(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    gone = T0 + 3 * STEP
    (root / "fmi" / "20210701" / f"{gone:%Y%m%d%H%M}_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz").unlink()
    with caplog.at_level(logging.WARNING):
        data = both(root, context_frames=1, target_frames=1)
    assert "event 'fmi_a': 1 of 6 time steps missing" in caplog.text
    # FMI steps 0 1 2 _ 4 5 give windows (0 1) (1 2) (4 5); KNMI's 5 steps give 4.
    assert len(data) == 3 + 4
    for index in range(len(data)):
        times = data.window_times(index)
        assert (np.diff(times) == np.timedelta64(STEP)).all()
        assert np.datetime64(gone) not in times or index >= 3  # the KNMI event has that time; FMI's does not


def test_a_file_that_fails_to_import_is_logged_once_and_missing(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    truncated = write_fmi(root, T0 + 2 * STEP, fmi_codes(2))
    truncated.write_bytes(truncated.read_bytes()[:40])  # cut inside the gzip stream
    wrong = write_knmi(root, T0 + 1 * STEP, knmi_counts(1, shape=(10, 10)))  # another product's grid
    garbage = write_knmi(root, T0 + 3 * STEP, knmi_counts(3))
    garbage.write_bytes(b"not HDF5 at all")
    with caplog.at_level(logging.WARNING):
        data = both(root, context_frames=1, target_frames=1)
        for index in range(len(data)):
            data[index]
    for path in (truncated, wrong, garbage):
        assert sum(str(path) in record.getMessage() for record in caplog.records) == 1, path
    # FMI 0 1 _ 3 4 5: windows (0 1) (3 4) (4 5); KNMI 0 _ 2 _ 4: none of 2 frames.
    assert len(data) == 3
    assert [str(data.window_times(i)[0])[11:16] for i in range(3)] == ["12:00", "12:15", "12:20"]


def test_events_go_whole_to_one_split(tmp_path: Path) -> None:
    starts = {f"e{k}": T0 + timedelta(hours=k) for k in range(10)}  # an 80 / 10 / 10 shuffle: 8, 1 and 1
    for start in starts.values():
        write_fmi_event(tmp_path, start, 3)
    events = {name: event("fmi", start, 3) for name, start in starts.items()}
    splits = {"train": ["e0", "e2", "e4"], "val": ["e1"], "test": ["e3"]}
    options: dict[str, Any] = {"archives": {"fmi": FMI}, "events": events, "context_frames": 2, "target_frames": 1}
    for split, names in splits.items():
        data = RadarArchiveSequences(tmp_path, split, splits=splits, **options)
        assert [f.event.name for f in data.events] == names
        firsts = {str(data.window_times(i)[0]) for i in range(len(data))}
        assert len(data) == len(names) and all(starts[n].isoformat() in firsts for n in names)
    shuffled = {
        split: [f.event.name for f in RadarArchiveSequences(tmp_path, split, **options).events]
        for split in ("train", "val", "test")
    }
    assert sorted(name for names in shuffled.values() for name in names) == sorted(events)  # whole events
    assert [len(names) for names in shuffled.values()] == [8, 1, 1]
    with pytest.raises(ValueError, match="event 'e1' is in splits 'train' and 'val'"):
        RadarArchiveSequences(tmp_path, "train", splits={"train": ["e1"], "val": ["e1"]}, **options)
    with pytest.raises(ValueError, match=r"split 'val' has no event: splits\['val'\] is empty"):
        RadarArchiveSequences(tmp_path, "val", splits={"train": ["e1"], "val": []}, **options)
    with pytest.raises(ValueError, match="names event 'e99', which is not among the events"):
        RadarArchiveSequences(tmp_path, "train", splits={"train": ["e99"]}, **options)
    with pytest.raises(ValueError, match=r"split must be one of \['all', 'train', 'val', 'test'\], got 'dev'"):
        RadarArchiveSequences(tmp_path, "dev", splits=splits, **options)


def brute_force_acceptance(rain: np.ndarray, valid: np.ndarray, size: int, threshold: float, low: float) -> np.ndarray:
    rows, cols = rain.shape[-2] - size + 1, rain.shape[-1] - size + 1
    accept = np.zeros((rows, cols))
    for top in range(rows):
        for left in range(cols):
            window = rain[..., top : top + size, left : left + size]
            fraction = np.mean(np.nan_to_num(window, nan=0.0) >= threshold)
            has_valid = valid[..., top : top + size, left : left + size].any()
            accept[top, left] = (low + (1 - low) * fraction) if has_valid else 0.0
    return accept


def test_patches_favour_rain_and_their_weights_undo_it() -> None:
    rng = np.random.default_rng(0)
    rain = np.zeros((3, 1, 12, 14), dtype=np.float32)
    rain[:, :, 1:5, 8:13] = rng.uniform(0.5, 10.0, size=(3, 1, 4, 5))  # rain in the top right
    rain[:, :, 7:, :5] = np.nan  # no coverage bottom left
    valid = np.isfinite(rain[2:])  # the target: the last frame
    valid[:, :, :, 11:] = False  # and part of its right edge lost too
    patches = RainBiasedPatches(4, threshold=0.1, min_acceptance=0.2)
    accept = patches.acceptance(rain, valid)
    np.testing.assert_allclose(accept, brute_force_acceptance(rain, valid, 4, 0.1, 0.2), rtol=1e-12)
    assert float(accept.max()) == pytest.approx(1.0) and accept.min() == 0.0  # all wet: 1; all invalid: 0
    # Drawn positions follow acceptance / its sum; weights are mean(acceptance) / acceptance.
    draws = [patches.draw(rain, valid, np.random.default_rng([1, k])) for k in range(20_000)]
    counts = np.zeros_like(accept)
    for patch in draws:
        counts[patch.top, patch.left] += 1
        assert patch.acceptance == accept[patch.top, patch.left]
        assert patch.weight == pytest.approx(accept.mean() / patch.acceptance, rel=1e-12)
    expected = accept / accept.sum() * len(draws)
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected.max())
    # The weighted mean of a per-patch score estimates its mean over uniform positions (with a mask: those
    # left out hold no valid pixel, so their masked sums are 0 either way).
    score = rain[:, :, :, :].mean(axis=(0, 1))
    per_patch = np.array([[np.nansum(score[t : t + 4, s : s + 4]) for s in range(11)] for t in range(9)])
    masked = np.where(accept > 0, per_patch, 0.0)
    weighted = np.mean([p.weight * masked[p.top, p.left] for p in draws])
    plain = np.mean([masked[p.top, p.left] for p in draws])
    assert weighted == pytest.approx(masked.mean(), rel=0.03)
    assert plain > 1.5 * masked.mean()  # unweighted, the rain-biased draw overstates it
    with pytest.raises(ValueError, match=r"min_acceptance must be in \(0\.0, 1\.0\], got 0"):
        RainBiasedPatches(4, min_acceptance=0)


def test_patch_items_come_from_a_seeded_rain_biased_draw(root: Path) -> None:
    data = both(root, patch_size=(8, 10), min_acceptance=0.05)
    item = data[1]
    assert item["context"].shape == (2, 1, 8, 10) and item["mask"].shape == (2, 1, 8, 10)
    top, left = item["origin"].tolist()
    whole = both(root)[1]
    for key in ("context", "target", "context_mask", "mask"):
        torch.testing.assert_close(item[key], whole[key][..., top : top + 8, left : left + 10])
    rain = np.asarray(data.events[0].rain_rate[1:5])
    accept = RainBiasedPatches((8, 10), min_acceptance=0.05).acceptance(rain, np.isfinite(rain[2:]))
    assert float(item["weight"]) == pytest.approx(accept.mean() / accept[top, left], rel=1e-6)
    again = both(root, patch_size=(8, 10), min_acceptance=0.05)[1]
    assert all(torch.equal(item[key], again[key]) for key in item)  # a function of (seed, split, epoch, index)
    origins = set()
    for epoch in range(30):
        data.set_epoch(epoch)
        origins.add(tuple(data[1]["origin"].tolist()))
    assert len(origins) > 5
    wet = [float((data[i % len(data)]["target"] >= 0.1).float().mean()) for i in range(len(data))]
    dry_share = np.mean([float((both(root)[i]["target"] >= 0.1).float().mean()) for i in range(len(data))])
    assert np.mean(wet) > 2 * dry_share  # patches sit on the rain far more than the frames' average
    with pytest.raises(ValueError, match="patch_size \\(21, 8\\) does not fit event 'knmi_a'"):
        both(root, patch_size=(21, 8))


def test_patches_drawn_by_the_context_do_not_look_at_the_target(root: Path) -> None:
    # Drawn by the whole window, a patch is kept more often where rain is still there in the target; a model
    # trained on those learns too much rain. favour_rain_in="context" decides by the frames the model reads only.
    rain = np.asarray(both(root).events[0].rain_rate[1:5])  # window 1: context frames 1-2, target frames 3-4
    valid = np.isfinite(rain[2:])
    patches = RainBiasedPatches((8, 10), min_acceptance=0.05)
    by_context, by_window = patches.acceptance(rain[:2], valid), patches.acceptance(rain, valid)
    assert not np.allclose(by_context, by_window)  # the fixture's rain moves: the two draws differ
    for favour, accept in (("context", by_context), ("window", by_window)):
        for epoch in range(5):
            data = both(root, patch_size=(8, 10), min_acceptance=0.05, favour_rain_in=favour)
            data.set_epoch(epoch)
            item = data[1]
            top, left = item["origin"].tolist()
            assert float(item["weight"]) == pytest.approx(accept.mean() / accept[top, left], rel=1e-6)
    with pytest.raises(ValueError, match=r"favour_rain_in must be one of \['window', 'context'\], got 'target'"):
        both(root, patch_size=8, favour_rain_in="target")


def test_flips_and_rotations_keep_frames_and_masks_aligned(root: Path) -> None:
    events = {"fmi_a": event("fmi", T0, 6)}
    options: dict[str, Any] = {"archives": {"fmi": FMI}, "events": events, "context_frames": 2, "target_frames": 2}
    options |= {"patch_size": 12, "splits": {"train": ["fmi_a"]}}
    plain = RadarArchiveSequences(root, "train", **options)
    turned = RadarArchiveSequences(root, "train", augment=True, **options)
    seen = set()
    for epoch in range(30):
        plain.set_epoch(epoch)
        turned.set_epoch(epoch)
        for index in range(len(plain)):
            item, expected = turned[index], plain[index]
            assert torch.equal(item["origin"], expected["origin"]) and torch.equal(item["weight"], expected["weight"])
            matches = [
                (k, flip)
                for k in range(4)
                for flip in (False, True)
                if all(torch.equal(item[key], flip_rotate(expected, k, flip)[key]) for key in expected)
            ]
            assert matches, "one symmetry must map every frame and mask alike"
            if len(matches) == 1:  # a patch with symmetries of its own does not tell which was drawn
                seen.add(matches[0])
    assert len(seen) == 8
    assert (turned[0]["context"][turned[0]["context_mask"] == 0] == 0).all()
    options["splits"] = {"train": [], "test": ["fmi_a"]}
    test = RadarArchiveSequences(root, "test", augment=True, **options)
    assert torch.equal(test[0]["context"], RadarArchiveSequences(root, "test", **options)[0]["context"])


def test_events_are_read_once_into_a_cache(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = root / "cache"
    first = both(root, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 2

    imported: list[str] = []
    monkeypatch.setattr("convlstm.data.formats.radar_archive._import_rain_rate", lambda _, path: imported.append(path))
    second = both(root, cache_dir=cache)
    assert not imported and isinstance(second.events[0].rain_rate, np.memmap)
    for index in range(len(first)):
        assert all(torch.equal(first[index][key], second[index][key]) for key in first[index])
    shipped = pickle.dumps(second)  # as to a DataLoader worker started by spawn: the file is mapped, not copied
    assert len(shipped) < second.events[0].rain_rate.nbytes
    unpickled = pickle.loads(shipped)
    assert isinstance(unpickled.events[0].rain_rate, np.memmap)
    assert unpickled.recordings[0].frames.event is unpickled.events[0]
    assert all(torch.equal(second[4][key], unpickled[4][key]) for key in second[4])
    write_fmi(root, T0 + STEP, fmi_codes(5))  # a file changed: its event is read again, the other one not
    with pytest.raises(ValueError, match="none of its 6 files"):  # the stand-in importer returns nothing
        both(root, cache_dir=cache)
    assert len(imported) == 6 and all("fmi" in path for path in imported)


def test_a_cache_under_home_is_the_users_home_not_a_folder_named_tilde(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    both(root, cache_dir="~/.cache/radar")
    assert len(list((home / ".cache" / "radar").glob("*.npy"))) == 2
    assert not (work / "~").exists()


def test_bad_descriptions_are_named(root: Path) -> None:
    events = {"fmi_a": event("fmi", T0, 6)}

    def build(archive: dict[str, Any], **kwargs: Any) -> RadarArchiveSequences:
        options: dict[str, Any] = {"events": events, "context_frames": 1, "target_frames": 1, **kwargs}
        return RadarArchiveSequences(root, "all", archives={"fmi": archive}, **options)

    lacking = {k: v for k, v in FMI.items() if k != "fn_ext"}
    with pytest.raises(ValueError, match="archives\\['fmi'\\] lacks \\['fn_ext'\\]; a pystepsrc data_sources entry"):
        build(lacking)
    with pytest.raises(ValueError, match="has unknown keys \\['fn_extension'\\]"):
        build({**FMI, "fn_extension": "pgm.gz"})
    with pytest.raises(ValueError, match=r"'fmi_pmg' is not a pysteps importer: .*fmi_pgm.*knmi_hdf5"):
        build({**FMI, "importer": "fmi_pmg"})
    with pytest.raises(ValueError, match=r"\['timestep'\] \(minutes\) must be a finite number > 0, got 0"):
        build({**FMI, "timestep": 0})
    with pytest.raises(ValueError, match="end 2021-07-01 12:27:00 must follow start 2021-07-01 12:00:00 by whole"):
        build(FMI, events={"odd": {"start": "2021-07-01 12:00", "end": "2021-07-01 12:27"}})
    with pytest.raises(ValueError, match="events\\['x'\\]\\['archive'\\] must be one of the archives \\['fmi'\\]"):
        build(FMI, events={"x": {"archive": "knmi", "start": T0, "end": T0}})
    with pytest.raises(ValueError, match="events\\['x'\\]\\['start'\\] must be a date and time"):
        build(FMI, events={"x": {"start": "yesterday", "end": T0}})
    with pytest.raises(FileNotFoundError, match=r"event 'late': no file of archive 'fmi' .* the first would be"):
        build(FMI, events={"late": event("fmi", T0 + timedelta(days=9), 3)})


def test_a_recipe_names_the_source_and_pastes_pystepsrc_entries(tmp_path: Path) -> None:
    args = yaml.safe_load(yaml.safe_dump(write_radar_archive(tmp_path)))  # as a recipe holds them
    args["events"]["fmi_1"] = {"archive": "fmi", "start": 202107021200, "end": "202107021225"}  # pysteps' form
    assert sources.SOURCES["radar_archive"] == "RadarArchiveSequences"
    data = sources.make_dataset("radar_archive", "val", context_frames=3, target_frames=2, seed=4, args=args)
    assert isinstance(data, RadarArchiveSequences) and data.seed == 4 and len(data) == 2
    item = data[0]
    assert item["context"].shape == (3, 1, 16, 16) and 0 <= float(item["context"].max()) <= 1  # HKO-7 pixels
    assert item["weight"].shape == () and item["origin"].dtype == torch.int64
