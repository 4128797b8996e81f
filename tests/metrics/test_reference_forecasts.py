"""The climatology by hour of day and "same hour yesterday", on series whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from convlstm.metrics import HourlyClimatology, observed_earlier

T0 = np.datetime64("2019-03-01T00:00", "ns")
HOUR = np.timedelta64(1, "h")


def _series(hours: int) -> tuple[np.ndarray, np.ndarray]:
    """Field t holds the value t everywhere: (hours, 1, 2, 3)."""
    times = T0 + np.arange(hours) * HOUR
    return np.arange(hours, dtype=np.float64)[:, None, None, None] * np.ones((1, 1, 2, 3)), times


def test_the_climatology_averages_each_hour_of_day() -> None:
    fields, times = _series(72)  # three days: hour h holds h, h + 24 and h + 48
    climatology = HourlyClimatology.fit(fields, times)
    assert len(climatology.times_of_day) == 24 and (climatology.counts == 3).all()
    valid = np.array([[T0 + 5 * HOUR, T0 + 100 * HOUR]])  # 05:00 and 04:00 (day 5)
    at = climatology.at(valid)
    assert at.shape == (1, 2, 1, 2, 3)
    np.testing.assert_allclose(at[0, 0], 5 + 24)  # mean of 5, 29, 53
    np.testing.assert_allclose(at[0, 1], 4 + 24)


def test_the_climatology_of_chunks_equals_the_one_of_everything() -> None:
    fields, times = _series(72)
    whole = HourlyClimatology.fit(fields, times)
    parts = HourlyClimatology.fit_chunks((fields[a : a + 17], times[a : a + 17]) for a in range(0, 72, 17))
    np.testing.assert_allclose(parts.fields, whole.fields, rtol=1e-12)
    np.testing.assert_array_equal(parts.counts, whole.counts)
    np.testing.assert_array_equal(parts.times_of_day, whole.times_of_day)


def test_the_climatology_refuses_a_time_of_day_it_never_saw() -> None:
    fields, times = _series(24)
    climatology = HourlyClimatology.fit(fields[::6], times[::6])  # 00, 06, 12, 18 UTC only
    with pytest.raises(ValueError, match="no field at time of day"):
        climatology.at(np.array([T0 + 3 * HOUR]))
    with pytest.raises(ValueError, match="NaN"):
        HourlyClimatology.fit(np.full((2, 1, 1, 1), np.nan), times[:2])


def test_same_hour_yesterday_reads_the_archive_24_hours_back() -> None:
    fields, times = _series(60)
    valid = T0 + np.array([[30, 31], [59, 24]]) * HOUR
    earlier = observed_earlier(fields, times, valid)
    assert earlier.shape == (2, 2, 1, 2, 3)
    np.testing.assert_array_equal(earlier[..., 0, 0, 0], [[6, 7], [35, 0]])
    with pytest.raises(ValueError, match="no observation"):
        observed_earlier(fields, times, np.array([T0 + 23 * HOUR]))
    gap = np.delete(np.arange(60), 10)  # hour 10 missing: hour 34 has no yesterday
    with pytest.raises(ValueError, match="2019-03-02T10"):
        observed_earlier(fields[gap], times[gap], np.array([T0 + 34 * HOUR]))
