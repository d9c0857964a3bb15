"""`export --format bioimageio`: a BioImage Model Zoo package that
bioimageio.core's own model test passes, offline, whose tensors are our
predict's; a package that fails the test is never written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile

import numpy as np
import pytest
import tifffile

from keras_unet_sr import SuperResolutionUNet
from keras_unet_sr.cli import main
from keras_unet_sr.export.bioimageio_files import predict_normalized
from keras_unet_sr.inference.predictor import Predictor, load_model

core = pytest.importorskip("bioimageio.core")
ruyaml = pytest.importorskip("ruyaml")  # bioimageio.spec's YAML library


@pytest.fixture(scope="module")
def sim3_model(tmp_path_factory):
    """A frame-subset model (frames 0, 5, 10 of 15) with a run folder, with
    a test-time average (the half turn: two calls) in the weights' graph."""
    run = tmp_path_factory.mktemp("run")
    model = SuperResolutionUNet(
        frames=3,
        scale=2,
        depth=1,
        filters=4,
        frame_subset=(0, 5, 10),
        test_time_transforms="half-turn",
    )
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"data": {"source": "synthetic:sim3"}}))
    (run / "metrics.json").write_text(
        json.dumps(
            {
                "split": "validation",
                "epochs": 3,
                "model": {"psnr": 30.5, "ssim": 0.9},
                "bicubic": {"psnr": 25.0, "ssim": 0.8},
                "images": [{}] * 4,
            }
        )
    )
    return run / "model.keras"


@pytest.fixture(scope="module")
def raw_stack(tmp_path_factory):
    """A channel-last stack (15 samples per pixel, axes YXS) with a 65 nm
    pixel size in the TIFF resolution tags."""
    rng = np.random.default_rng(3)
    stack = (100 + rng.gamma(2.0, 50.0, (70, 60, 15))).astype(np.uint16)
    sample = tmp_path_factory.mktemp("raw") / "raw.tif"
    per_cm = 1e7 / 65.0
    tifffile.imwrite(
        sample,
        stack,
        photometric="minisblack",
        planarconfig="contig",
        resolution=(per_cm, per_cm),
        resolutionunit="CENTIMETER",
        metadata=None,
    )
    return sample, stack


@pytest.fixture(scope="module")
def package(sim3_model, raw_stack, tmp_path_factory):
    """Exported once, from the channel-last stack."""
    sample, stack = raw_stack
    folder = tmp_path_factory.mktemp("zoo")
    out = folder / "sim3.zip"
    code = main(
        [
            "export",
            str(sim3_model),
            "--format",
            "bioimageio",
            "--out",
            str(out),
            "--sample",
            str(sample),
            "--author",
            "Jane Doe <jane@example.org>",
            "--cite",
            "Doe et al. 2026;10.1000/xyz123",
        ]
    )
    assert code == 0
    return {"zip": out, "stack": stack, "model": sim3_model}


def _rdf(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return ruyaml.YAML(typ="safe", pure=True).load(archive.read("rdf.yaml"))


def test_bioimageio_core_model_test_passes_on_the_package(package, tmp_path):
    with contextlib.chdir(tmp_path):  # core unpacks weights into the cwd
        summary = core.test_model(package["zip"])
    failed = [d.name for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    names = " ".join(d.name for d in summary.details)
    assert "Reproduce test outputs" in names  # the weights really ran


def test_the_description_says_what_our_predict_does(package):
    rdf = _rdf(package["zip"])
    (inputs,), (outputs,) = rdf["inputs"], rdf["outputs"]
    y_in, y_out = inputs["axes"][1], outputs["axes"][1]
    assert [a["type"] for a in inputs["axes"]] == ["batch", "space", "space", "channel"]
    assert inputs["axes"][3]["channel_names"] == ["frame0", "frame5", "frame10"]
    assert y_in["size"]["step"] == 2  # the model's size multiple
    assert y_in["unit"] == "micrometer" and y_in["scale"] == pytest.approx(0.065)
    assert y_out["scale"] == pytest.approx(0.0325)  # output grid: input / scale
    assert y_out["size"] == {"tensor_id": "raw_frames", "axis_id": "y"}
    model = load_model(str(package["model"]))
    assert y_out["halo"] == model.halo * model.scale
    scale_range = next(p for p in inputs["preprocessing"] if p["id"] == "scale_range")
    assert scale_range["kwargs"]["min_percentile"] == 1.0
    assert scale_range["kwargs"]["max_percentile"] == 99.8
    assert set(scale_range["kwargs"]["axes"]) == {"y", "x", "channel"}  # per sample
    assert rdf["weights"]["tensorflow_saved_model_bundle"]["source"].endswith(".zip")
    assert rdf["authors"][0] == {"name": "Jane Doe", "email": "jane@example.org"}
    assert rdf["cite"][0]["doi"] == "10.1000/xyz123"
    assert rdf["config"]["keras_unet_sr"]["model_config"]["frame_subset"] == [0, 5, 10]
    assert rdf["config"]["keras_unet_sr"]["model_config"]["test_time_transforms"] == (
        "half-turn"
    )
    with zipfile.ZipFile(package["zip"]) as archive:
        readme = archive.read(rdf["documentation"]["source"]).decode()
        names = set(archive.namelist())
    assert {rdf["covers"][0]["source"], "test_input.npy", "sample_input.tif"} <= names
    assert "## Validation" in readme and "| this model | 30.50 | 0.9000 |" in readme
    assert "sim3" in readme  # the training data, from the run's config.json
    assert "predicted in 2 orientations" in readme


def test_test_tensors_are_our_predict_on_the_sample(package, tmp_path):
    with zipfile.ZipFile(package["zip"]) as archive:
        archive.extractall(tmp_path)
    test_input = np.load(tmp_path / "test_input.npy")
    test_output = np.load(tmp_path / "test_output.npy")
    model = load_model(str(package["model"]))
    frames = package["stack"][..., [0, 5, 10]].astype(np.float32)
    h, w = test_input.shape[1:3]
    top, left = (70 - h) // 2, (60 - w) // 2
    np.testing.assert_array_equal(test_input[0], frames[top : top + h, left : left + w])
    expected = predict_normalized(Predictor(model), test_input[0])
    np.testing.assert_allclose(test_output[0], expected, rtol=1e-5, atol=1e-6)
    assert test_output.shape == (1, 2 * h, 2 * w, 1)


def test_a_package_whose_weights_do_not_reproduce_fails_the_check(package, tmp_path):
    """Core's verdict on a package with a wrong test output is what the
    export reads as a failure (so it would write nothing)."""
    from keras_unet_sr.export.bioimageio_package import _validation_failure

    with zipfile.ZipFile(package["zip"]) as archive:
        archive.extractall(tmp_path)
    path = tmp_path / "test_output.npy"
    old = hashlib.sha256(path.read_bytes()).hexdigest()
    wrong = np.load(path)
    wrong[0, 8:40, 8:40] += 0.05
    np.save(path, wrong)
    rdf = (tmp_path / "rdf.yaml").read_text()
    new = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "rdf.yaml").write_text(rdf.replace(old, new))
    with contextlib.chdir(tmp_path):
        summary = core.test_model(tmp_path / "rdf.yaml")
    failure = _validation_failure(summary)
    assert failure and "Reproduce test outputs" in failure


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--name", "bad/name"], "name"),
        (["--license", "NOT-A-LICENSE"], "not an SPDX license id"),
        (["--cite", "no link"], "give TEXT;DOI"),
        (["--axes", "YX"], "--axes YX has 2 letters"),
    ],
)
def test_bad_package_flags_are_one_line_and_write_nothing(
    sim3_model, raw_stack, tmp_path, capsys, extra, expected
):
    out = tmp_path / "m.zip"
    code = main(
        [
            "export",
            str(sim3_model),
            "--format",
            "bioimageio",
            "--out",
            str(out),
            "--sample",
            str(raw_stack[0]),
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_package_is_never_replaced(package, capsys):
    before = package["zip"].read_bytes()
    code = main(
        [
            "export",
            str(package["model"]),
            "--format",
            "bioimageio",
            "--out",
            str(package["zip"]),
        ]
    )
    assert code == 2 and "exists" in capsys.readouterr().err
    assert package["zip"].read_bytes() == before


def test_the_default_sample_is_simulated_for_the_models_modality(tmp_path, capsys):
    """The issue's command as is: no --sample, a 0.1.0 model (frames 0, 2, 4
    of a 9-frame SIM stack): the package is built on a simulated SIM image."""
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "unet_v0_1_0.keras"
    out = tmp_path / "model.zip"
    code = main(["export", str(fixture), "--format", "bioimageio", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rdf = _rdf(out)
    assert rdf["inputs"][0]["axes"][1].get("unit") is None  # no pixel size known
    assert rdf["license"] == "CC-BY-4.0" and len(rdf["cite"]) == 2
