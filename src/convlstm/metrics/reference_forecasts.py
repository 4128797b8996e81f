"""The reference forecasts of weather verification that need the archive's times rather than a context: a
climatology by time of day, and the observation a fixed lag before the valid time ("same hour yesterday").

They are not models (``convlstm.baselines`` holds those, persistence among them): a climatology is fitted on
the training years and read at each forecast's valid time, and "same hour yesterday" reads the archive 24 hours
before the valid time, which for most lead times lies before the context a model sees. The climatology also
serves the anomaly correlation of [`WeatherScores`][convlstm.metrics.WeatherScores].
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["ONE_DAY", "HourlyClimatology", "observed_earlier"]

#: The lag of "same hour yesterday".
ONE_DAY = np.timedelta64(24, "h")


def time_of_day(times: np.ndarray) -> np.ndarray:
    """The time since midnight (UTC) of each of ``times`` (datetime64), as timedelta64[m]."""
    stamps = np.asarray(times).astype("datetime64[m]")
    return stamps - stamps.astype("datetime64[D]")


def _check_times(times: np.ndarray, name: str) -> np.ndarray:
    times = np.asarray(times)
    if times.ndim != 1 or not np.issubdtype(times.dtype, np.datetime64):
        raise ValueError(f"{name} must be a 1-D array of datetime64, got dtype {times.dtype} shape {times.shape}")
    return times


@dataclass
class HourlyClimatology:
    """The mean field at each time of day (each hour for hourly data) over the fields it was fitted on.

    Attributes:
        times_of_day: (S,) timedelta64[m] since midnight, sorted: the slots.
        fields: (S, C, H, W) float64, the mean field of each slot.
        counts: (S,) how many fields each slot's mean took.
    """

    times_of_day: np.ndarray
    fields: np.ndarray
    counts: np.ndarray

    @classmethod
    def fit(cls, fields: np.ndarray, times: np.ndarray) -> HourlyClimatology:
        """The mean of ``fields`` (N, C, H, W) by time of day of ``times`` (N,) datetime64: the training split's.

        Raises:
            ValueError: shapes that disagree, no field, or NaN in the fields.
        """
        return cls.fit_chunks([(fields, times)])

    @classmethod
    def fit_chunks(cls, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> HourlyClimatology:
        """As [`fit`][convlstm.metrics.HourlyClimatology.fit], over (fields, times) chunks read one after another (an
        archive larger than memory)."""
        sums: dict[np.timedelta64, np.ndarray] = {}
        counts: dict[np.timedelta64, int] = {}
        for fields, times in chunks:
            values = np.asarray(fields, dtype=np.float64)
            times = _check_times(times, "times")
            if values.ndim != 4 or len(values) != len(times):
                raise ValueError(
                    f"fields must be (N, C, H, W) with one time each, got fields {values.shape} and {len(times)} times"
                )
            if np.isnan(values).any():
                missing = int(np.isnan(values).sum())
                raise ValueError(f"fields hold {missing} NaN values; a climatology needs complete fields")
            slots, slot_of = np.unique(time_of_day(times), return_inverse=True)
            for k, slot in enumerate(slots):
                chosen = values[slot_of == k]
                if slot in sums and sums[slot].shape != chosen.shape[1:]:
                    raise ValueError(f"fields of shape {chosen.shape[1:]} do not match earlier {sums[slot].shape}")
                sums[slot] = sums.get(slot, 0.0) + chosen.sum(axis=0)
                counts[slot] = counts.get(slot, 0) + len(chosen)
        if not sums:
            raise ValueError("a climatology needs at least one field")
        order = sorted(sums)
        count = np.array([counts[s] for s in order])
        fields_by_slot = np.stack([sums[s] for s in order]) / count[:, None, None, None]
        return cls(times_of_day=np.array(order, dtype="timedelta64[m]"), fields=fields_by_slot, counts=count)

    def at(self, valid_times: np.ndarray) -> np.ndarray:
        """The climatology at each of ``valid_times`` (any shape of datetime64): shape (*valid_times.shape, C, H, W).

        Raises:
            ValueError: a valid time falls at a time of day the climatology has no field for.
        """
        valid_times = np.asarray(valid_times)
        if not np.issubdtype(valid_times.dtype, np.datetime64):
            raise ValueError(f"valid_times must be datetime64, got dtype {valid_times.dtype}")
        wanted = time_of_day(valid_times.ravel())
        slot = np.searchsorted(self.times_of_day, wanted)
        slot = np.minimum(slot, len(self.times_of_day) - 1)
        missing = self.times_of_day[slot] != wanted
        if missing.any():
            unknown = sorted({str(t) for t in wanted[missing]})
            raise ValueError(
                f"the climatology has no field at time of day {unknown[:5]}; it has "
                f"{[str(t) for t in self.times_of_day]}"
            )
        return self.fields[slot].reshape(*valid_times.shape, *self.fields.shape[1:])


def observed_earlier(
    fields: np.ndarray, times: np.ndarray, valid_times: np.ndarray, lag: np.timedelta64 = ONE_DAY
) -> np.ndarray:
    """The observation ``lag`` before each valid time: with the default lag, the "same hour yesterday" forecast.

    Args:
        fields: (N, C, H, W) the archive's fields.
        times: (N,) their times (datetime64), strictly increasing.
        valid_times: datetime64 of any shape: the times to forecast.
        lag: how long before the valid time the observation is taken.

    Returns:
        (*valid_times.shape, C, H, W): fields[time == valid_time - lag].

    Raises:
        ValueError: an observation ``lag`` before a valid time is not in the archive.
    """
    times = _check_times(times, "times")
    fields = np.asarray(fields)
    if fields.ndim != 4 or len(fields) != len(times):
        raise ValueError(f"fields must be (N, C, H, W) with one time each, got {fields.shape} and {len(times)} times")
    wanted = (np.asarray(valid_times) - lag).ravel()
    index = np.minimum(np.searchsorted(times, wanted), len(times) - 1)
    missing = times[index] != wanted
    if missing.any():
        raise ValueError(
            f"no observation {lag} before valid times {[str(t + lag) for t in wanted[missing][:3]]}: the archive "
            f"runs from {times[0]} to {times[-1]} and must hold those times"
        )
    return fields[index].reshape(*np.shape(valid_times), *fields.shape[1:])
