"""`keras-unet-sr tune`: tiny searches with the real keras-tuner, no mocks."""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras_tuner
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from keras_unet_sr.cli import main
from keras_unet_sr.cli.options import config_from_args
from keras_unet_sr.cli.tune import register, space_from_args
from keras_unet_sr.config import FitConfig, load_config, smoke
from keras_unet_sr.errors import UserError
from keras_unet_sr.model.unet import SuperResolutionUNet
from keras_unet_sr.tuning.hypermodel import (
    Dimension,
    SuperResolutionHyperModel,
    parse_space,
    space_from_json,
    space_to_json,
)
from keras_unet_sr.tuning.search import make_tuner

# Smoke data and tiny U-Nets: two optimizer steps per epoch.
TINY = ["--smoke", "--steps-per-epoch", "2", "--space", "depth=1,2"]
TINY += ["--space", "filters=4,8"]


def parse_tune(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="keras-unet-sr")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["tune", *argv])


# `keras-unet-sr tune` in a child process, for killing it mid-trial.
TUNE_SCRIPT = """
import argparse, sys
from keras_unet_sr.cli.tune import register
parser = argparse.ArgumentParser(prog="keras-unet-sr")
register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def tune(*argv: str) -> int:
    """`keras-unet-sr tune ARGV`; `cli.main` turns its UserErrors into exit 2."""
    args = parse_tune(*argv)
    return args.func(args)


def trial_json(out, trial_id: str) -> dict:
    path = out / "tuner" / f"trial_{trial_id}" / "trial.json"
    return json.loads(path.read_text())


def hparams_events(log_dir) -> list[plugin_data_pb2.HParamsPluginData]:
    """The HParams plugin data of all event files under `log_dir`."""
    found = []
    pattern = os.path.join(str(log_dir), "**", "events.out.tfevents.*")
    for path in glob.glob(pattern, recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == "hparams":
                    found.append(
                        plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
                    )
    return found


def session_hparams(log_dir) -> list[dict]:
    """The hyperparameter values each session (trial run) logged."""
    return [
        {
            k: getattr(v, v.WhichOneof("kind"))
            for k, v in data.session_start_info.hparams.items()
        }
        for data in hparams_events(log_dir)
        if data.HasField("session_start_info")
    ]


@pytest.fixture(scope="module")
def random_search(tmp_path_factory, tfds_dir):
    """A random search run for one trial, then continued to two by the same
    command with a larger --max-trials."""
    out = tmp_path_factory.mktemp("tune") / "random"
    command = [*TINY, "--tuner", "random", "--epochs", "1", "--out", str(out)]
    command += ["--data-dir", tfds_dir]
    assert tune(*command, "--max-trials", "1") == 0
    first = trial_json(out, "0")
    assert tune(*command, "--max-trials", "2") == 0
    return out, command, first


def test_search_writes_the_trials_table_and_the_best_config(random_search):
    out, _, _ = random_search
    with open(out / "trials.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["trial"] for row in rows] != [] and len(rows) == 2
    assert set(rows[0]) == {
        "trial",
        "depth",
        "filters",
        "loss_alpha",
        "lr",
        "params",
        "epochs",
        "val_psnr",
        "train_seconds",
        "status",
    }
    scores = [float(row["val_psnr"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        assert row["status"] == "COMPLETED" and row["epochs"] == "1"
        assert int(row["params"]) > 0 and float(row["train_seconds"]) > 0

    best = load_config(out / "best_config.json")
    assert isinstance(best, FitConfig)
    top = rows[0]
    assert (best.model.depth, best.model.filters) == (
        int(top["depth"]),
        int(top["filters"]),
    )
    assert best.train.lr == pytest.approx(float(top["lr"]))
    assert best.train.loss_alpha == pytest.approx(float(top["loss_alpha"]))
    assert best.train.epochs == smoke(FitConfig()).train.epochs  # not --epochs 1


def test_the_best_config_trains_with_fit(random_search, tmp_path, tfds_dir):
    out, _, _ = random_search
    best = str(out / "best_config.json")
    run = tmp_path / "final"
    assert (
        main(["fit", "--config", best, "--out", str(run), "--data-dir", tfds_dir]) == 0
    )
    assert load_config(run / "config.json").model == load_config(best).model


def test_each_trial_logs_its_hyperparameters_for_the_hparams_dashboard(
    random_search,
):
    out, _, _ = random_search
    logs = out / "logs"
    experiments = [
        d.experiment for d in hparams_events(logs) if d.HasField("experiment")
    ]
    assert len(experiments) == 1  # written once, not again by the continued run
    names = {info.name for info in experiments[0].hparam_infos}
    assert names == {"depth", "filters", "lr", "loss_alpha"}
    metrics = {(m.name.group, m.name.tag) for m in experiments[0].metric_infos}
    assert ("validation", "epoch_psnr") in metrics

    for trial_id in ("0", "1"):
        values = trial_json(out, trial_id)["hyperparameters"]["values"]
        (logged,) = session_hparams(logs / trial_id)  # one session per trial
        assert logged == pytest.approx(values)


def test_running_the_search_again_keeps_the_finished_trials(random_search, capsys):
    out, command, first = random_search
    trials = sorted(p.name for p in (out / "tuner").glob("trial_*"))
    assert trials == ["trial_0", "trial_1"]
    again = trial_json(out, "0")
    assert again["hyperparameters"] == first["hyperparameters"]
    assert again["score"] == first["score"]  # trial 0 was not trained again

    capsys.readouterr()
    assert tune(*command, "--max-trials", "2") == 0  # finished: nothing to run
    assert sorted(p.name for p in (out / "tuner").glob("trial_*")) == trials
    assert "Continuing the search" in capsys.readouterr().out


@pytest.mark.slow
def test_a_trial_killed_midway_runs_again_with_clean_logs(tmp_path, tfds_dir):
    out = tmp_path / "killed"
    command = [*TINY, "--tuner", "random", "--max-trials", "2", "--epochs", "2"]
    command += ["--steps-per-epoch", "40", "--out", str(out), "--data-dir", tfds_dir]
    process = subprocess.Popen(
        [sys.executable, "-c", TUNE_SCRIPT, "tune", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not glob.glob(
            str(out / "logs" / "1" / "**" / "events.*"), recursive=True
        ):
            assert process.poll() is None, "tune ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    oracle = json.loads((out / "tuner" / "oracle.json").read_text())
    assert oracle["end_order"] == ["0"]  # killed during trial 1
    first = trial_json(out, "0")

    assert tune(*command) == 0
    assert trial_json(out, "0") == first
    assert trial_json(out, "1")["status"] == "COMPLETED"
    assert not (out / "tuner" / "trial_2").exists()
    assert len(session_hparams(out / "logs" / "1")) == 1  # the partial run's is gone


def test_a_changed_search_space_is_refused(random_search):
    out, command, _ = random_search
    with pytest.raises(UserError, match=r"other settings \(space\.depth\)") as error:
        tune(*command, "--space", "depth=1", "--max-trials", "3")
    assert "\n" not in str(error.value)
    assert not (out / "tuner" / "trial_2").exists()


def test_hyperband_continues_the_best_trials_from_their_checkpoints(tmp_path, tfds_dir):
    out = tmp_path / "hyperband"
    command = [*TINY, "--epochs", "3", "--max-trials", "4", "--out", str(out)]
    assert tune(*command, "--data-dir", tfds_dir) == 0  # hyperband by default
    trials = [trial_json(out, str(i)) for i in range(4)]
    assert all(t["status"] == "COMPLETED" for t in trials)
    # max_epochs 3: three 1-epoch trials, then the best one trained to epoch 3.
    resumed = trials[3]["hyperparameters"]["values"]
    assert (resumed["tuner/initial_epoch"], resumed["tuner/epochs"]) == (1, 3)
    assert resumed["tuner/trial_id"] in {"0", "1", "2"}
    epochs = trials[3]["metrics"]["metrics"]["epochs"]["observations"][0]["value"]
    assert epochs == [3]
    assert load_config(out / "best_config.json").train.epochs == 2  # smoke's


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--space", "foo=1"], "--space foo=1: unknown hyperparameter 'foo'"),
        (["--space", "tile=16,32"], "'tile' cannot be tuned"),
        (["--space", "depth"], "--space depth: expected NAME=V1,V2,..."),
        (["--space", "depth=1,x"], "depth 'x' is not an integer"),
        (["--space", "depth=1,9"], "depth 9 is out of range (0..6)"),
        (["--space", "lr=1e-2:1e-4"], "empty range"),
        (["--space", "lr=0:1e-2:log"], "out of range (> 0)"),
        (["--space", "lr=1e-4:1e-2:cubic"], "expected MIN:MAX or MIN:MAX:log"),
        (["--space", "normalization=none:batch"], "takes a list of values"),
        (["--depth", "2", "--space", "depth=1,2"], "--depth and --space depth"),
        (["--space-file", "/no/such.json"], "--space-file /no/such.json: no such"),
        (["--tile", "34"], "--tile 34: must be a multiple of 4 (2**2, the largest"),
        (["--strategy", "multiworker"], "tune supports default and mirrored"),
    ],
)
def test_bad_search_input_is_one_line_naming_the_option(argv, message, tmp_path):
    with pytest.raises(UserError) as error:
        tune(*TINY, *argv, "--out", str(tmp_path / "out"))
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_space_file_and_flags(tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text(
        json.dumps(
            {"depth": [1, 2], "lr": {"min": 1e-4, "max": 1e-2, "sampling": "log"}}
        )
    )
    args = parse_tune("--space-file", str(space_file), "--filters", "16")
    space = space_from_args(args, config_from_args(args))
    assert space["depth"] == Dimension(choices=(1, 2))
    assert space["lr"] == Dimension(low=1e-4, high=1e-2, log=True)
    assert space["filters"] == Dimension(choices=(16,))  # the flag fixes it
    assert space["loss_alpha"] == Dimension(low=0.5, high=0.95)  # default
    assert space_from_json(space_to_json(space), "round trip") == space


def test_a_switch_is_searched_as_a_choice_never_as_a_range():
    space = parse_space(["fine_frames=true,false"])
    assert space["fine_frames"] == Dimension(choices=(True, False))
    hp = keras_tuner.HyperParameters()
    assert space["fine_frames"].declare(hp, "fine_frames") is True  # not 1
    fixed = parse_space(["residual=false"])["residual"]
    assert fixed.declare(keras_tuner.HyperParameters(), "residual") is False
    with pytest.raises(UserError, match="fine_frames takes a list of values"):
        parse_space(["fine_frames=false:true"])


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_the_config_seed_fixes_the_sampled_trials(tuner, tmp_path):
    # The oracle treats seed 0 as "no seed"; the default config seed is 0.
    space = parse_space(["depth=1,2,3", "filters=4,8,16", "lr=1e-4:1e-2:log"])
    hypermodel = SuperResolutionHyperModel(
        smoke(FitConfig()), space, frames=9, scale=2, epochs=2
    )

    def sampled(folder: str) -> list[dict]:
        search = make_tuner(
            tuner,
            hypermodel,
            tmp_path / folder,
            max_trials=3,
            epochs=2,
            seed=0,
            distribution_strategy=None,
        )
        hp = keras_tuner.HyperParameters()
        for name, dimension in space.items():
            dimension.declare(hp, name)
        search.oracle.update_space(hp)
        trials = [search.oracle.create_trial(f"t{i}") for i in range(3)]
        return [trial.hyperparameters.values for trial in trials]

    first = sampled("a")
    assert sampled("b") == first
    assert len({json.dumps(values, sort_keys=True) for values in first}) > 1


def test_the_hypermodel_builds_fit_model_from_a_config_copy():
    base = smoke(FitConfig())
    space = parse_space(["depth=2", "filters=8", "lr=1e-3:1e-2:log", "loss_alpha=0.6"])
    hypermodel = SuperResolutionHyperModel(base, space, frames=9, scale=2, epochs=2)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert isinstance(model, SuperResolutionUNet)
    assert (model.get_config()["depth"], model.get_config()["filters"]) == (2, 8)
    assert model.loss.alpha == 0.6
    assert model.optimizer.built  # so Hyperband restores Adam's state
    config = hypermodel.config_for(hp.values)
    assert (config.model.depth, config.train.lr) == (2, hp.get("lr"))
    assert base.model.depth == 1  # the base config is not modified


@pytest.mark.slow
def test_a_trial_runs_under_mirrored_over_two_cpu_replicas(
    tmp_path, tfds_dir, console_script
):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            console_script,
            "tune",
            *TINY,
            "--tuner",
            "random",
            "--max-trials",
            "1",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--strategy",
            "mirrored",
            "--cpu-replicas",
            "2",
            "--data-dir",
            tfds_dir,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "best_config.json").exists()
    assert trial_json(out, "0")["status"] == "COMPLETED"


def test_the_cli_turns_bad_search_input_into_exit_2(tmp_path, capsys):
    from keras_unet_sr.cli import main

    code = main(["tune", *TINY, "--space", "foo=1", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("keras-unet-sr tune: error: --space foo=1") and "\n" not in err
    )
