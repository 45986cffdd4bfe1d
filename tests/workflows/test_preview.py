"""Data preview: samples after preprocessing, as the model receives them."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.workflows.model_factory import save_digit_images
from workflows.data import recipe_for_input
from workflows.errors import DataError
from workflows.runner import run_inline

DIGIT_INPUT = [{"name": "x", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]


def png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_npz_samples_are_described_exactly(sample_dir):
    r = run_inline(
        "preview", {"data": str(sample_dir / "digits_calibration.npz"), "inputs": DIGIT_INPUT}
    )
    x = np.load(sample_dir / "digits_calibration.npz")["x"][:8]
    assert r["inputs"]["x"]["shape"] == [8, 1, 8, 8] and not r["synthetic"]
    assert len(r["samples"]) == 8
    for s, sample in zip(r["samples"], x, strict=True):
        assert s["max"] == pytest.approx(float(sample.max())) and s["label"] is not None
        thumb = png(s["thumbnail_png"])
        assert thumb.shape == (72, 72)  # 8x8, upscaled 9x with nearest neighbour
        # Min-max scaled: the brightest pixel of the sample is white in the thumbnail.
        assert thumb.max() == 255 and thumb[::9, ::9].argmax() == sample[0].argmax()


def test_image_folder_preview_spreads_over_classes_and_applies_the_recipe(tmp_path, sample_dir):
    d = np.load(sample_dir / "digits_test.npz")
    save_digit_images(tmp_path / "imgs", d["x"][:60], d["y"][:60])
    r = run_inline(
        "preview",
        {
            "data": str(tmp_path / "imgs"),
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 1, 16, 16]}],
            "preprocess": {"size": [16, 16], "channels": "L", "mean": [0.5], "std": [0.5]},
            "count": 6,
        },
    )
    assert r["inputs"]["x"]["shape"] == [6, 1, 16, 16]
    assert len({s["label"] for s in r["samples"]}) >= 5  # not six images of the first class
    assert r["inputs"]["x"]["min"] >= -1.0 and r["inputs"]["x"]["max"] <= 1.0  # (v - .5) / .5
    assert r["inputs"]["x"]["min"] == pytest.approx(-1.0)
    assert png(r["samples"][0]["thumbnail_png"]).shape == (72, 72)


def test_bgr_nhwc_is_shown_in_natural_colours(tmp_path):
    folder = tmp_path / "red"
    folder.mkdir()
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[..., 0] = 200  # red
    pixels[:16, :16, 1] = 100  # and one green-ish corner, so min-max scaling keeps colour
    Image.fromarray(pixels).save(folder / "a.png")
    r = run_inline(
        "preview",
        {
            "data": str(folder),
            "inputs": [{"name": "img", "dtype": "float32", "shape": [None, 32, 32, 3]}],
            "preprocess": {"layout": "NHWC", "channels": "BGR"},
        },
    )
    thumb = png(r["samples"][0]["thumbnail_png"]).astype(int)
    assert thumb.shape == (72, 72, 3)
    red = thumb[-1, -1]
    assert red[0] == 255 and red[1] == 0 and red[2] == 0  # still red, not blue


def test_synthetic_and_non_image_inputs():
    r = run_inline(
        "preview",
        {"inputs": [{"name": "v", "dtype": "float32", "shape": ["batch", 16]}], "count": 3},
    )
    assert r["synthetic"] and len(r["samples"]) == 3
    assert all(s["thumbnail_png"] is None for s in r["samples"])
    assert r["inputs"]["v"]["shape"] == [3, 16]


def test_a_wrong_recipe_is_named(tmp_path, sample_dir):
    d = np.load(sample_dir / "digits_test.npz")
    save_digit_images(tmp_path / "imgs", d["x"][:4], d["y"][:4])
    with pytest.raises(DataError, match="resize"):
        run_inline(
            "preview",
            {
                "data": str(tmp_path / "imgs"),
                "inputs": DIGIT_INPUT,
                "count": 4,
                "preprocess": {"size": [10, 10], "channels": "L"},
            },
        )


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (["batch", 1, 8, 8], {"layout": "NCHW", "channels": "L", "size": [8, 8]}),
        ([None, 3, 224, 224], {"layout": "NCHW", "channels": "RGB", "size": [224, 224]}),
        ([1, 299, 299, 3], {"layout": "NHWC", "channels": "RGB", "size": [299, 299]}),
        (["n", 3, "h", "w"], {"layout": "NCHW", "channels": "RGB"}),  # any size: keep it
        (["batch", 16], {}),  # not an image
        ([1, 64, 64, 64], {}),
        (None, {}),
    ],
)
def test_recipe_fitted_to_the_input_shape(shape, expected):
    assert recipe_for_input(shape) == expected
