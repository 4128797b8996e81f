"""The real-radar benchmark's ensemble sums: the rank histogram and reliability sums through pysteps' verification."""

import importlib
import pickle
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.benchmarks.scripts import BENCHMARKS

pytest.importorskip("pysteps")


@pytest.fixture(scope="module")
def radar_nowcast() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("radar_nowcast")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_rank_counts_skip_dry_and_uncovered_pixels(radar_nowcast: ModuleType) -> None:
    # Three members at four pixels of one lead time: the observation below all of them, between the 2nd and 3rd,
    # above all, and a pixel where all are dry; a fifth pixel lies outside the radars' cover.
    members = np.array([[1.0, 1.0, 1.0, 0.0, 1.0], [2.0, 2.0, 2.0, 0.0, 2.0], [3.0, 3.0, 3.0, 0.0, 3.0]])
    members = members.reshape(3, 1, 1, 5)
    truth = np.array([0.5, 2.5, 7.0, 0.0, 9.0]).reshape(1, 1, 5)
    valid = np.array([True, True, True, True, False]).reshape(1, 1, 5)
    counts = radar_nowcast.rank_counts(members, truth, valid, seed=0)
    np.testing.assert_array_equal(counts, [1.0, 0.0, 1.0, 1.0])


def test_the_reliability_sums_count_each_covered_pixel_once_per_threshold(radar_nowcast: ModuleType) -> None:
    # Four members: probabilities of >= 1 mm/h of 1/4, 3/4 and 1 where 2, 0 and 3 mm/h were observed.
    members = np.array([[2.0, 2.0, 2.0, 5.0], [0.0, 2.0, 2.0, 5.0], [0.0, 2.0, 2.0, 5.0], [0.0, 0.0, 2.0, 5.0]])
    members = members.reshape(4, 1, 1, 4)
    truth = np.array([2.0, 0.0, 3.0, 4.0]).reshape(1, 1, 4)
    valid = np.array([True, True, True, False]).reshape(1, 1, 4)
    sums = radar_nowcast.reliability_sums(members, truth, valid, thresholds=(1.0, 10.0), bins=4)
    assert sums.shape == (2, 4, 3)
    probability, observed, pixels = sums[0].sum(axis=0)
    assert (probability, observed, pixels) == pytest.approx((2.0, 2.0, 3.0))
    assert sums[0, -1].tolist() == pytest.approx([1.0, 1.0, 1.0])  # the sure pixel, in the last bin, was wet
    assert sums[1].sum(axis=0).tolist() == pytest.approx([0.0, 0.0, 3.0])  # nothing reaches 10 mm/h


def test_merged_stats_keep_the_fuller_record_of_a_start_time(radar_nowcast: ModuleType, tmp_path: Path) -> None:
    # Two runs that shared the work: each scored its own start time with the ensembles' sums and kept a copy of
    # the other's earlier record without them; whatever the order, the merge keeps the fuller records.
    first = {("ours", "e", 0): {"ens": {"crps": 1.0}, "one": 1}, ("ours", "e", 3): {"ens": None, "one": 2}}
    second = {("ours", "e", 0): {"ens": None, "one": 1}, ("ours", "e", 3): {"ens": {"crps": 2.0}, "one": 2}}
    paths = [tmp_path / "first.pkl", tmp_path / "second.pkl"]
    for path, records in zip(paths, (first, second), strict=True):
        path.write_bytes(pickle.dumps(records))
    for order in (paths, paths[::-1]):
        merged = radar_nowcast.load_stats(order)
        assert merged[("ours", "e", 0)]["ens"] == {"crps": 1.0} and merged[("ours", "e", 3)]["ens"] == {"crps": 2.0}
