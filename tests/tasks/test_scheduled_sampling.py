"""Scheduled sampling: probabilities along the schedule and the Bernoulli masks drawn from them."""

import pytest
import torch

from convlstm.tasks import ScheduledSampling


def test_linear_schedule_probabilities():
    schedule = ScheduledSampling("linear", start=1.0, end=0.0, end_step=50_000)
    assert schedule.probability(0) == 1.0
    assert schedule.probability(25_000) == pytest.approx(0.5)
    assert schedule.probability(1) == pytest.approx(1.0 - 2e-5)  # OpenSTL's 2e-5 per step
    assert schedule.probability(50_000) == 0.0
    assert schedule.probability(80_000) == 0.0
    rising = ScheduledSampling("linear", start=0.2, end=0.6, end_step=4)
    assert [rising.probability(s) for s in range(6)] == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.6])
    assert ScheduledSampling("linear", start=1.0, end=0.25, end_step=0).probability(0) == 0.25


def test_none_and_teacher_forcing():
    none = ScheduledSampling("none")
    assert none.probability(0) == 0.0
    assert none.mask(0, 3, 4) is None
    forced = ScheduledSampling("teacher_forcing")
    assert forced.probability(10**6) == 1.0
    mask = forced.mask(10**6, 3, 4)
    assert mask is not None and mask.dtype == torch.bool and mask.shape == (3, 4) and bool(mask.all())


@pytest.mark.parametrize("step", [0, 300, 700, 1000])
def test_mask_frequency_follows_probability(step):
    schedule = ScheduledSampling("linear", start=0.9, end=0.1, end_step=1000)
    mask = schedule.mask(step, 400, 50, generator=torch.Generator().manual_seed(step))
    assert mask is not None and mask.shape == (400, 50)
    expected = schedule.probability(step)
    assert float(mask.float().mean()) == pytest.approx(expected, abs=0.01)  # 20,000 draws: sd < 0.0035
    # Draws are per sequence and per step, not one coin for the batch.
    assert 0 < float(mask.float().mean(1).std()) < 0.2


def test_mask_is_reproducible_with_a_generator():
    schedule = ScheduledSampling("linear", start=1.0, end=0.0, end_step=10)
    a = schedule.mask(5, 8, 6, generator=torch.Generator().manual_seed(7))
    b = schedule.mask(5, 8, 6, generator=torch.Generator().manual_seed(7))
    assert a is not None and b is not None and torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "cosine"}, "kind"),
        ({"start": 1.5}, "start"),
        ({"end": -0.1}, "end"),
        ({"end_step": -1}, "end_step"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScheduledSampling(**kwargs)


def test_bad_mask_arguments():
    schedule = ScheduledSampling()
    with pytest.raises(ValueError, match="step"):
        schedule.probability(-1)
    with pytest.raises(ValueError, match="batch_size"):
        schedule.mask(0, 0, 3)
