"""Datasets for calibration, accuracy and test inference: image folders with a preprocessing
recipe, .npy/.npz arrays, or inputs synthesised from the model's input spec (marked synthetic)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workflows.errors import DataError
from workflows.inputs import synthesize
from workflows.model import TensorSpec
from workflows.options import Options, from_dict, option

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass
class Preprocess(Options):
    """How images become model input. Saved with the workflow so every run feeds the same numbers."""

    size: list[int] | None = option(None, "Resize to [height, width]; none keeps the image size")
    layout: str = option(
        "NCHW", "Tensor layout: NCHW (PyTorch, ONNX) or NHWC (TensorFlow)", choices=("NCHW", "NHWC")
    )
    channels: str = option(
        "RGB", "Channel order: RGB, BGR or L (grayscale)", choices=("RGB", "BGR", "L")
    )
    scale: float = option(1 / 255, "Multiply pixel values (0..255) by this first")
    mean: list[float] = option([0.0], "Then subtract this per-channel mean")
    std: list[float] = option([1.0], "Then divide by this per-channel std")

    @classmethod
    def coerce(cls, value: Preprocess | dict[str, Any] | None) -> Preprocess:
        """An options field's value as a recipe: None gives the defaults, a dict is parsed."""
        return cls() if value is None else from_dict(cls, value)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """[N, H, W, C] uint8 pixels -> float32 model input in this recipe's layout."""
        x = pixels.astype(np.float32) * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout.upper() == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)


def recipe_for_input(shape: list[Any] | None) -> dict[str, Any]:
    """Resize, layout and channels that fit an image input shape ([N,C,H,W] or [N,H,W,C]);
    empty when the shape is not image-like."""
    if not shape or len(shape) != 4:
        return {}

    def known(d: Any) -> bool:
        return isinstance(d, int) and d > 0

    if shape[1] in (1, 3):
        c, h, w, layout = shape[1], shape[2], shape[3], "NCHW"
    elif shape[3] in (1, 3):
        c, h, w, layout = shape[3], shape[1], shape[2], "NHWC"
    else:
        return {}
    out: dict[str, Any] = {"layout": layout, "channels": "L" if c == 1 else "RGB"}
    if known(h) and known(w):
        out["size"] = [h, w]
    return out


@dataclass
class Dataset:
    """Feeds for every model input (N samples each), optional labels and where they came from."""

    x: dict[str, np.ndarray]
    y: np.ndarray | None
    label_names: list[str] | None
    source: str
    synthetic: bool

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds in batches of `batch_size` (the last may be smaller)."""
        for start in range(0, len(self), batch_size):
            yield {k: v[start : start + batch_size] for k, v in self.x.items()}

    def split(self, first: int, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Two disjoint parts, `first` samples and the rest, drawn by a seeded shuffle (a file
        sorted by class still gives both parts every class)."""
        order = np.random.default_rng(seed).permutation(len(self))
        parts = []
        for index in (np.sort(order[:first]), np.sort(order[first:])):
            y = None if self.y is None else self.y[index]
            x = {k: v[index] for k, v in self.x.items()}
            parts.append(Dataset(x, y, self.label_names, self.source, self.synthetic))
        return parts[0], parts[1]

    def take(self, n: int | None) -> Dataset:
        """The first `n` samples (all when n is None)."""
        if n is None or n >= len(self):
            return self
        y = None if self.y is None else self.y[:n]
        return Dataset(
            {k: v[:n] for k, v in self.x.items()}, y, self.label_names, self.source, self.synthetic
        )


def _image_files(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        files, labels = [], []
        for index, cls in enumerate(classes):
            for f in sorted(cls.rglob("*")):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(index)
        return files, labels, [c.name for c in classes]
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    return files, None, None


def _pil_mode(preprocess: Preprocess) -> str:
    mode = {"RGB": "RGB", "BGR": "RGB", "L": "L", "GRAY": "L"}.get(preprocess.channels.upper())
    if mode is None:
        raise DataError(f"unknown channel order {preprocess.channels!r}; use RGB, BGR or L")
    return mode


def decode_image(path: Path, preprocess: Preprocess, mode: str | None = None) -> np.ndarray:
    """One image as [H, W, C] uint8 pixels in the recipe's channel order and size."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert(mode or _pil_mode(preprocess))
            if preprocess.size:
                img = img.resize(
                    (preprocess.size[1], preprocess.size[0]), Image.Resampling.BILINEAR
                )
            arr = np.asarray(img)
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if preprocess.channels.upper() == "BGR":
        arr = arr[:, :, ::-1]
    return arr


def load_images(
    folder: Path, preprocess: Preprocess, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Decode and preprocess the images below `folder` (folder-per-class gives labels).

    With `limit`, only that many are decoded, spread evenly over the sorted files so that every
    class is represented (the first N of a folder-per-class tree would all be one class).
    """
    files, labels, names = _image_files(folder)
    if not files:
        raise DataError(
            f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}, directly or in one "
            "subfolder per class); choose a folder with images or a .npz file"
        )
    if limit is not None and limit < len(files):
        keep = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
    mode = _pil_mode(preprocess)
    pixels, sizes = [], {}
    for f in files:
        arr = decode_image(f, preprocess, mode)
        sizes.setdefault(arr.shape[:2], f)
        if len(sizes) > 1:
            (s1, f1), (s2, f2) = list(sizes.items())[:2]
            raise DataError(
                f"{folder}: images have different sizes ({f1.name} is {s1[1]}x{s1[0]}, {f2.name} is "
                f"{s2[1]}x{s2[0]}) and no resize is set; set one (e.g. --resize 224x224)"
            )
        pixels.append(arr)
    x = preprocess.apply(np.stack(pixels))
    return x, (np.asarray(labels, np.int64) if labels is not None else None), names


def _check_shape(x: np.ndarray, spec: TensorSpec, source: str) -> None:
    if spec.shape is None:
        return
    expected = spec.shape[1:]
    if len(expected) != x.ndim - 1 or any(
        isinstance(e, int) and e != a for e, a in zip(expected, x.shape[1:], strict=False)
    ):
        dims = "x".join("?" if not isinstance(d, int) else str(d) for d in expected)
        raise DataError(
            f"{source}: samples are {'x'.join(map(str, x.shape[1:]))} but input {spec.name!r} expects "
            f"{dims}; check the resize, layout and channel settings"
        )


def load_dataset(
    source: str | Path | None,
    specs: Sequence[TensorSpec],
    preprocess: Preprocess | None = None,
    limit: int | None = None,
    seed: int = 0,
    synthetic_count: int = 64,
    label_names: list[str] | None = None,
) -> Dataset:
    """Load data for a model whose inputs are `specs` (None: synthesise `synthetic_count` samples)."""
    if source is None or source == "":
        feeds = synthesize(specs, batch=synthetic_count, seed=seed)
        return Dataset(feeds, None, label_names, f"synthetic (normal(0,1), seed {seed})", True)
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    y, names = None, label_names
    if path.is_dir():
        if len(specs) != 1:
            raise DataError(
                f"{path}: image folders feed single-input models; this one has {len(specs)}"
            )
        x, y, folder_names = load_images(path, preprocess or Preprocess(), limit)
        feeds = {specs[0].name: x}
        names = folder_names or names
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        if len(specs) != 1:
            raise DataError(
                f"{path}: an image feeds single-input models; this one has {len(specs)}"
            )
        feeds = {
            specs[0].name: (preprocess or Preprocess()).apply(
                decode_image(path, preprocess or Preprocess())[None]
            )
        }
    elif path.suffix == ".npy":
        if len(specs) != 1:
            raise DataError(f"{path}: a .npy holds one array; the model has {len(specs)} inputs")
        arr = np.load(path, allow_pickle=False, mmap_mode="r")  # reads only the rows taken
        if specs[0].shape is not None and arr.ndim == len(specs[0].shape) - 1:
            arr = arr[None]  # a single sample without its batch axis
        feeds = {specs[0].name: np.array(arr[:limit])}
    elif path.suffix == ".npz":
        wanted = [s.name for s in specs]
        with np.load(path, allow_pickle=False) as data:  # reads only the arrays asked for
            stored = set(data.files)
            if all(n in stored for n in wanted):
                keys = {n: n for n in wanted}
            elif len(specs) == 1 and "x" in stored:
                keys = {wanted[0]: "x"}
            else:
                raise DataError(
                    f"{path}: arrays {sorted(stored)} do not name the model's inputs {wanted}"
                )
            feeds = {n: data[k][:limit] for n, k in keys.items()}
            y = data["y"][:limit] if "y" in stored else None
            if "labels" in stored:
                names = [str(n) for n in data["labels"]]
    else:
        raise DataError(f"{path}: data must be an image, an image folder, a .npy or a .npz file")
    for spec in specs:
        arr = feeds[spec.name]
        if spec.dtype not in ("unknown", arr.dtype.name):
            feeds[spec.name] = arr.astype(spec.dtype)
        _check_shape(feeds[spec.name], spec, str(path))
    counts = {len(v) for v in feeds.values()} | ({len(y)} if y is not None else set())
    if len(counts) != 1:
        raise DataError(f"{path}: inputs and labels have different sample counts {sorted(counts)}")
    if not next(iter(counts)):
        raise DataError(f"{path}: holds no samples")
    dataset = Dataset(
        feeds, None if y is None else np.asarray(y).astype(np.int64), names, str(path), False
    )
    return dataset.take(limit)


HOLDOUT_MAX = 1000  # held-out samples at most (all are in memory at once)
HOLDOUT_BYTES = 512 * 2**20  # and at most this much of them


def calibration_and_evaluation(
    calibration: str | None,
    evaluation: str | None,
    specs: Sequence[TensorSpec],
    preprocess: Preprocess | None,
    calibration_samples: int,
    evaluation_samples: int | None,
    holdout: float,
    seed: int,
    label_names: list[str] | None = None,
) -> tuple[Dataset, Dataset, bool]:
    """Calibration data, the data a variant is judged on, and whether that was held out.

    With calibration data and no evaluation data, a disjoint part of the calibration samples is
    held out for judging, so that a verdict rests on the user's real inputs, never on noise:
    `holdout` of them when fewer than twice `calibration_samples` were given, otherwise all
    beyond `calibration_samples` (up to HOLDOUT_MAX samples and HOLDOUT_BYTES). Without any data,
    both are synthetic (and marked so)."""
    if calibration and not evaluation:
        pool = load_dataset(
            calibration,
            specs,
            preprocess,
            calibration_samples + HOLDOUT_MAX,
            seed,
            label_names=label_names,
        )
        n = len(pool)
        if n >= 2:
            if n >= 2 * calibration_samples:
                first = calibration_samples
            else:
                first = min(max(round(n * (1 - holdout)), 1), n - 1)
            calib, rest = pool.split(first, seed)
            per_sample = max(sum(v[:1].nbytes for v in pool.x.values()), 1)
            held = rest.take(min(HOLDOUT_BYTES // per_sample, evaluation_samples or n))
            held.source = (
                f"held out from {pool.source} (disjoint from the {len(calib)} samples used to "
                "calibrate)"
            )
            return calib, held, True
    calib = load_dataset(
        calibration,
        specs,
        preprocess,
        calibration_samples,
        seed,
        synthetic_count=calibration_samples,
        label_names=label_names,
    )
    judged = load_dataset(
        evaluation, specs, preprocess, evaluation_samples, seed + 1, label_names=label_names
    )
    return calib, judged, False


def read_labels(path: Path | None) -> list[str] | None:
    """Label names from a text file, one per line (None when no file is given)."""
    if path is None:
        return None
    lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    return [ln for ln in lines if ln]
