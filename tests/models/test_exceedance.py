"""Exceedance probabilities: the model's shapes and training signal, the per-threshold cross-entropy, and
ensembles drawn from any model by input perturbation."""

import math

import pytest
import torch

from convlstm.inference.ensemble import ensemble_forecast, perturb_context
from convlstm.models import ExceedanceForecaster, create_model, from_pretrained
from convlstm.tasks.losses import exceedance_loss
from convlstm.units import rain_rate_to_pixel

SMALL = {"hidden_channels": [4, 4], "default_horizon": 3}


def test_probabilities_have_one_channel_per_threshold_and_every_parameter_learns(tmp_path: object) -> None:
    torch.manual_seed(0)
    model = ExceedanceForecaster("shi2015_radar_convlstm", SMALL, thresholds=(0.5, 2.0, 10.0), head_channels=4)
    context, target = torch.rand(2, 4, 1, 8, 8), torch.rand(2, 3, 1, 8, 8)
    probabilities = model(context)
    assert probabilities.shape == (2, 3, 3, 8, 8) and ((probabilities > 0) & (probabilities < 1)).all()
    exceedance_loss(model.logits(context), target, thresholds=model.thresholds).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    model.save_pretrained(tmp_path)  # type: ignore[arg-type]
    loaded = from_pretrained(tmp_path).eval()  # type: ignore[arg-type]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(context), model(context), rtol=0, atol=0)
    with pytest.raises(ValueError, match="thresholds must be distinct positive rain rates in increasing order"):
        ExceedanceForecaster("shi2015_radar_convlstm", SMALL, thresholds=(2.0, 0.5))


def test_exceedance_loss_is_the_mean_of_per_threshold_cross_entropies() -> None:
    thresholds = (0.5, 5.0)
    rain = torch.tensor([0.1, 1.0, 10.0]).view(1, 1, 1, 1, 3)  # events: none; the first; both
    target = rain_rate_to_pixel(rain, "hko7")
    logits = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0]]).view(1, 1, 2, 1, 3)
    events = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])

    def cross_entropy(z: float, y: float) -> float:
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    per_threshold = [
        sum(cross_entropy(float(logits[0, 0, k, 0, i]), float(events[k, i])) for i in range(3)) / 3 for k in range(2)
    ]
    # float32 logits and a float32 round trip of the rain rates through pixels: agreement to ~1e-6.
    loss = exceedance_loss(logits, target, thresholds=thresholds)
    assert loss.item() == pytest.approx(sum(per_threshold) / 2, rel=1e-5)
    weighted = exceedance_loss(logits, target, thresholds=thresholds, threshold_weights=[1.0, 3.0])
    assert weighted.item() == pytest.approx((per_threshold[0] + 3 * per_threshold[1]) / 4, rel=1e-5)
    with pytest.raises(ValueError, match=r"logits must be \(B, T, K=2, \*spatial\)"):
        exceedance_loss(logits[:, :, :1], target, thresholds=thresholds)


def test_exceedance_loss_counts_rain_exactly_on_a_threshold_as_an_event() -> None:
    below = torch.nextafter(torch.tensor(2.0), torch.tensor(0.0)).item()
    target = torch.tensor([2.0, below]).view(1, 1, 1, 1, 2)  # mm/h: on the threshold, and just under it
    logits = torch.full((1, 1, 1, 1, 2), 3.0)
    loss = exceedance_loss(logits, target, thresholds=(2.0,), units="mm/h")
    softplus = torch.nn.functional.softplus
    event, no_event = softplus(torch.tensor(-3.0)).item(), softplus(torch.tensor(3.0)).item()  # -log p, -log(1 - p)
    assert loss.item() == pytest.approx((event + no_event) / 2, rel=1e-6)


def test_ensembles_by_input_perturbation() -> None:
    torch.manual_seed(0)
    model = create_model("shi2015_radar_convlstm", **SMALL)
    context = torch.rand(2, 4, 1, 16, 16)
    context[..., :4, :] = 0.0  # a dry band
    members = ensemble_forecast(model, context, members=4, seed=1)
    assert members.shape == (2, 4, 3, 1, 16, 16) and model.training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(members[:, 0], model(context))  # member 0 is the control forecast
    assert not torch.equal(members[:, 1], members[:, 2])
    torch.testing.assert_close(ensemble_forecast(model, context, members=4, seed=1), members, rtol=0, atol=0)
    gen = torch.Generator().manual_seed(0)
    perturbed = perturb_context(context, noise_std=0.3, generator=gen)
    assert (perturbed[..., :4, :] == 0).all() and perturbed.max() <= 1.0  # dry stays dry, values stay in range
    ratio = perturbed[context > 0.05] / context[context > 0.05]
    # The factor is exp(0.3 e - 0.045), e ~ N(0, 1) (bilinear mixing narrows it): within exp(+-5 sigma).
    assert ratio.min() > 0.2 and ratio.max() < 4.5 and not torch.allclose(ratio, torch.ones_like(ratio))
