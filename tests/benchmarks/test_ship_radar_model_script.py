"""benchmarks/ship_radar_model.py: a run and its benchmark results become a shipped model whose card quotes the
benchmark's numbers, and a run trained on data of unknown terms is refused."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from convlstm.experiment.recipe import recipe_source
from convlstm.models import create_model, from_pretrained, read_model_card
from tests.benchmarks.scripts import run_benchmark


def fake_results(events: list[str]) -> dict[str, Any]:
    """results.json as benchmarks/radar_nowcast.py writes it, with a distinct number per event and method."""
    methods = ("persistence", "extrapolation", "sprog", "ours")
    blocks = {}
    for e, event in enumerate([*events, "pooled"]):
        blocks[event] = {
            "start_times": 3,
            "methods": {
                m: {
                    "csi": {"value": [0.1 * e + 0.01 * k + 0.001 * t for t in range(4)]},
                    "bias": {"value": [0.9 + 0.01 * k] * 4},
                    "fss": {"value": [[0.5 + 0.01 * k + 0.001 * s for s in range(6)], [0.2] * 6]},
                    "mae": {"value": 0.3 + 0.01 * k},
                }
                for k, m in enumerate(methods)
            },
        }
    return {
        "thresholds": [0.5, 1.0, 5.0, 10.0],
        "fss_thresholds": [1.0, 5.0],
        "fss_km": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        "horizon": 12,
        "deterministic": blocks,
    }


def write_run(run: Path, recipe: dict[str, Any], **model_args: Any) -> None:
    model = create_model("extrapolation_nowcast", base_channels=4, depth=1, default_horizon=12, **model_args)
    model.save_pretrained(run / "model")
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    training = {"steps": 7, "train_minutes": 1.5, "device": "CPU", "precision": "bf16-mixed", "stopped_by": "time"}
    (run / "training.json").write_text(json.dumps(training))


def test_the_card_quotes_the_benchmark_and_the_model_loads(tmp_path: Path) -> None:
    recipe = yaml.safe_load(recipe_source("radar_nowcast")[0])
    write_run(tmp_path / "run", recipe)
    results = {**fake_results(recipe["data"]["args"]["splits"]["test"]), "ours_match_tile": 32}
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = tmp_path / "shipped" / "radar-nowcast"
    done = run_benchmark(
        "ship_radar_model.py",
        *("--run-dir", str(tmp_path / "run"), "--scores", str(tmp_path / "results.json"), "--out", str(out)),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    model = from_pretrained(out)
    assert model.config.default_horizon == 12
    assert model.config.match_tile == 32  # shipped with the matching it was scored with
    card = read_model_card(out)
    assert card is not None and card.model == "extrapolation_nowcast" and card.context_frames == 4
    assert "in squares of 32 x 32 pixels" in card.summary
    assert card.lead_times == 12 and card.timestep_minutes == 5.0
    assert {d.licence for d in card.data} == {"CC BY 4.0 (FMI open data)", "CC BY 4.0 (KNMI Data Platform)"}
    pooled = results["deterministic"]["pooled"]["methods"]
    assert card.held_out_scores["radar-nowcast"]["pooled CSI@1"] == pooled["ours"]["csi"]["value"][1]
    assert card.held_out_scores["S-PROG"]["pooled FSS@1mm,16km"] == pooled["sprog"]["fss"]["value"][0][4]
    assert (
        card.held_out_scores["pysteps extrapolation"]["fmi_2017 MAE"]
        == results["deterministic"]["fmi_2017"]["methods"]["extrapolation"]["mae"]["value"]
    )
    assert "loss log_mse + 1 x fractions loss (1 - FSS over 16 px at 1, 5 mm/h)" in card.training
    assert "7 steps" in card.training and not (tmp_path / "shipped" / "radar-nowcast.partial").exists()
    assert card.training.startswith("`convlstm fit -c radar_nowcast`: 7 steps")  # the packaged recipe as it is


def ship(tmp_path: Path, run: str, out: Path, *extra: str) -> Any:
    return run_benchmark(
        "ship_radar_model.py",
        *("--run-dir", str(tmp_path / run), "--scores", str(tmp_path / "results.json"), "--out", str(out), *extra),
        timeout=300,
    )


def test_a_fine_tuned_run_states_both_trainings(tmp_path: Path) -> None:
    recipe = yaml.safe_load(recipe_source("radar_nowcast")[0])
    write_run(tmp_path / "first", recipe)
    (tmp_path / "results.json").write_text(json.dumps(fake_results(recipe["data"]["args"]["splits"]["test"])))
    assert ship(tmp_path, "first", tmp_path / "shipped-first").returncode == 0
    first = read_model_card(tmp_path / "shipped-first")
    assert first is not None and "learned prior" not in first.summary

    fine_tune = {**recipe, "model": {**recipe["model"], "init_from": "somewhere/first"}}
    fine_tune["data"]["args"]["splits"]["train"] = ["fmi_2016"]  # a subset: the sources must still list all
    write_run(tmp_path / "second", fine_tune, smoothing_scales=(1.0, 2.0), autocorrelation_prior=True)
    out = tmp_path / "shipped-second"
    done = ship(tmp_path, "second", out)
    assert done.returncode == 2 and "model.init_from somewhere/first: give --init-card" in done.stderr
    assert not out.exists()
    done = ship(tmp_path, "first", out, "--init-card", str(tmp_path / "shipped-first"))
    assert done.returncode == 2 and "--init-card given, but the run's recipe has no model.init_from" in done.stderr

    done = ship(tmp_path, "second", out, "--init-card", str(tmp_path / "shipped-first"))
    assert done.returncode == 0, done.stderr[-3000:]
    card = read_model_card(out)
    assert card is not None and card.training.startswith(first.training)
    assert "Then fine-tuned from that model" in card.training and card.training.count("7 steps") == 2
    # The command names what the run changed in the packaged recipe (the path of the model it started from aside).
    assert "(`convlstm fit -c radar_nowcast -o 'data.args.splits.train=[fmi_2016]' -o model.init_from=...`)" in (
        card.training
    )
    assert [d.name for d in card.data] == [d.name for d in first.data]
    assert "with S-PROG's per-scale decorrelation of the context as a learned prior" in card.summary
    assert from_pretrained(out).config.autocorrelation_prior is True

    # A model that learnt from an event the scores hold out cannot be the start of a shipped one.
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    replace(first, data=[*first.data, replace(first.data[0], name="pysteps-data fmi_2017 (2017)")]).write(leaky)
    done = ship(tmp_path, "second", tmp_path / "shipped-third", "--init-card", str(leaky))
    assert done.returncode == 2 and "learnt from held-out events ['fmi_2017']" in done.stderr


def test_a_run_trained_on_data_without_known_terms_is_refused(tmp_path: Path) -> None:
    recipe = yaml.safe_load(recipe_source("radar_nowcast")[0])
    recipe["data"]["args"]["splits"]["train"].append("mch_2015")
    write_run(tmp_path / "run", recipe)
    (tmp_path / "results.json").write_text(json.dumps(fake_results(["fmi_2017"])))
    out = tmp_path / "shipped"
    done = run_benchmark(
        "ship_radar_model.py",
        *("--run-dir", str(tmp_path / "run"), "--scores", str(tmp_path / "results.json"), "--out", str(out)),
        timeout=300,
    )
    assert done.returncode == 2 and "'mch_2015' of archive 'mch' has no known open-data licence" in done.stderr
    assert not out.exists()
