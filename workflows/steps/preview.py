"""Preview data as the model will receive it: a few samples after preprocessing, as thumbnails
(for image-shaped inputs) with their value ranges, so a wrong resize, layout, channel order or
normalisation shows before calibration or evaluation runs on it."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from workflows.data import Preprocess, load_dataset
from workflows.errors import DataError
from workflows.model import TensorSpec
from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress


@dataclass
class PreviewOptions(Options):
    """Options of the data-preview step."""

    data: str | None = option(None, "An image, image folder, .npy or .npz (none: synthetic)")
    inputs: list[dict[str, Any]] = option([], "The model's inputs: name, dtype and shape each")
    preprocess: Preprocess = option(Preprocess(), "How images become input tensors")
    count: int = option(8, "How many samples to show")


def _stats(a: np.ndarray) -> dict[str, float]:
    a = a.astype(np.float64)
    return {
        "min": float(a.min()),
        "max": float(a.max()),
        "mean": float(a.mean()),
        "std": float(a.std()),
    }


def as_image(sample: np.ndarray, layout: str, channels: str) -> np.ndarray | None:
    """One input sample (no batch axis) as [H, W, C] in RGB order, or None if not image-shaped."""
    a = sample
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim == 3:
        channels_first = a.shape[0] in (1, 3) and (layout.upper() == "NCHW" or a.shape[-1] > 4)
        if channels_first:
            a = a.transpose(1, 2, 0)
        elif a.shape[-1] not in (1, 3, 4):
            return None
    else:
        return None
    if min(a.shape[:2]) < 4 or a.shape[2] == 4:
        return None
    if a.shape[2] == 3 and channels.upper() == "BGR":
        a = a[:, :, ::-1]
    return a


def thumbnail_png(image: np.ndarray, smallest: int = 72, largest: int = 128) -> str:
    """Min-max scale to 0..255 and encode a PNG (base64), upscaled crisply when tiny."""
    from PIL import Image

    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image, dtype=np.float64)
    pixels = np.round(scaled * 255).astype(np.uint8)
    img = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    h, w = pixels.shape[:2]
    factor = min(max(smallest / min(h, w), 1.0), largest / max(h, w))
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    tiny = factor > 1
    img = img.resize(size, Image.Resampling.NEAREST if tiny else Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def preview(opts: PreviewOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Load up to `count` samples the way calibration and evaluation would, and describe them."""
    progress = progress or null_progress()
    specs = [
        TensorSpec(s["name"], None if s.get("shape") is None else tuple(s["shape"]), s["dtype"])
        for s in opts.inputs
    ]
    if not specs:
        raise DataError("preview: the model's inputs are needed (inspect the model first)")
    progress.update(0.1, "Reading data")
    data = load_dataset(opts.data, specs, opts.preprocess, opts.count, synthetic_count=opts.count)
    feeds, labels = data.x, data.y  # read once (images are decoded when read)
    progress.update(0.6, "Making thumbnails")
    first = specs[0].name
    x = feeds[first]
    samples = []
    for i in range(len(data)):
        image = as_image(x[i], opts.preprocess.layout, opts.preprocess.channels)
        label = None
        if labels is not None:
            label = int(labels[i])
            if data.label_names and 0 <= label < len(data.label_names):
                label = data.label_names[label]
        samples.append(
            {
                "thumbnail_png": None if image is None else thumbnail_png(image),
                "label": label,
                **_stats(x[i]),
            }
        )
    progress.update(1.0, "Preview ready")
    return {
        "step": "preview",
        "source": data.source,
        "synthetic": data.synthetic,
        "input": first,
        "inputs": {
            name: {"shape": list(arr.shape), "dtype": arr.dtype.name, **_stats(arr)}
            for name, arr in feeds.items()
        },
        "samples": samples,
    }


def run(options: PreviewOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return preview(from_dict(PreviewOptions, options), progress)
