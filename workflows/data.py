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
from workflows.rows import ImageRows, NpzColumns, Rows, open_npy

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


class Dataset:
    """Feeds for every model input, optional labels and where they came from.

    The samples are read a batch at a time from their row sources (`workflows.rows`: arrays,
    memory maps, image files decoded on demand), so a large dataset costs memory per batch, not
    per sample; `rows` selects which of the sources' samples belong to this dataset (None: all).
    """

    def __init__(
        self,
        x: dict[str, Rows],
        y: np.ndarray | None,
        label_names: list[str] | None,
        source: str,
        synthetic: bool,
        rows: np.ndarray | None = None,
        dtypes: dict[str, str] | None = None,
        fixed_batch: int | None = None,
    ) -> None:
        self.columns, self._y, self.rows = x, y, rows
        self.label_names, self.source, self.synthetic = label_names, source, synthetic
        self.dtypes = dtypes or {}
        # A model whose batch dimension is fixed (a TFLite file's 1, say) takes batches of
        # exactly that size: `batches` then pads the last one with copies of its last sample.
        self.fixed_batch = fixed_batch

    def __len__(self) -> int:
        if self.rows is not None:
            return len(self.rows)
        return len(next(iter(self.columns.values())))

    def _derive(self, rows: np.ndarray) -> Dataset:
        return Dataset(
            self.columns,
            self._y,
            self.label_names,
            self.source,
            self.synthetic,
            rows,
            self.dtypes,
            self.fixed_batch,
        )

    def _all_rows(self) -> np.ndarray:
        return self.rows if self.rows is not None else np.arange(len(self))

    @property
    def y(self) -> np.ndarray | None:
        if self._y is None or self.rows is None:
            return self._y
        return self._y[self.rows]

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Feeds for samples start..stop of this dataset, read from their sources now."""
        picked: Any = slice(start, stop) if self.rows is None else self.rows[start:stop]
        feeds = {}
        for name, column in self.columns.items():
            arr = column[picked]
            if isinstance(arr, np.memmap) or not arr.flags.writeable:
                arr = np.array(arr)  # a batch of its own, not a view of the mapped file
            dtype = self.dtypes.get(name)
            feeds[name] = np.ascontiguousarray(arr, dtype=dtype) if dtype else arr
        return feeds

    @property
    def x(self) -> dict[str, np.ndarray]:
        """Every sample in memory at once (for small datasets: previews, held-out sets)."""
        return self.read(0, len(self))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each input's shape over this dataset's samples, without reading them."""
        return {k: (len(self), *v.shape[1:]) for k, v in self.columns.items()}

    def sample_bytes(self) -> int:
        """Bytes one sample takes in memory, every input together."""
        return max(sum(v.nbytes for v in self.read(0, 1).values()), 1)

    def batch_size(self, wanted: int) -> int:
        """The batch size to use: the model's fixed one, else `wanted`."""
        return self.fixed_batch or wanted

    def batch(self, index: int, size: int) -> dict[str, np.ndarray]:
        """Batch `index` of `size` samples, read now; padded to `size` for a fixed-batch model
        (outputs beyond len(self) are then padding)."""
        feeds = self.read(index * size, (index + 1) * size)
        n = len(next(iter(feeds.values())))
        if self.fixed_batch and 0 < n < size:
            feeds = {
                k: np.concatenate([v, np.repeat(v[-1:], size - n, 0)]) for k, v in feeds.items()
            }
        return feeds

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds in batches of `batch_size` (the model's fixed size if it has one; the last may be
        smaller, or padded for a fixed size), each read when reached."""
        size = self.batch_size(batch_size)
        for index in range(-(-len(self) // size)):
            yield self.batch(index, size)

    def split(self, first: int, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Two disjoint parts, `first` samples and the rest, drawn by a seeded shuffle (a file
        sorted by class still gives both parts every class)."""
        rows = self._all_rows()
        order = np.random.default_rng(seed).permutation(len(rows))
        return self._derive(rows[np.sort(order[:first])]), self._derive(
            rows[np.sort(order[first:])]
        )

    def take(self, n: int | None) -> Dataset:
        """The first `n` samples (all when n is None)."""
        if n is None or n >= len(self):
            return self
        return self._derive(self._all_rows()[:n])

    def in_memory(self) -> Dataset:
        """The same samples, read once and held in memory (for data that is read many times)."""
        return Dataset(
            self.x, self.y, self.label_names, self.source, self.synthetic,
            fixed_batch=self.fixed_batch,
        )  # fmt: skip


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


def _check_sizes(folder: Path, files: list[Path]) -> None:
    """Without a resize, every image must have one size: read the headers only (cheap), so a
    mismatch is named before any work starts rather than halfway through calibration."""
    from PIL import Image

    first: tuple[tuple[int, int], Path] | None = None
    for f in files:
        try:
            with Image.open(f) as img:
                size = img.size
        except OSError as exc:
            raise DataError(f"{f}: not a readable image ({exc})") from exc
        if first is None:
            first = (size, f)
        elif size != first[0]:
            (w1, h1), f1 = first
            raise DataError(
                f"{folder}: images have different sizes ({f1.name} is {w1}x{h1}, {f.name} is "
                f"{size[0]}x{size[1]}) and no resize is set; set one (e.g. --resize 224x224)"
            )


def load_images(
    folder: Path, preprocess: Preprocess, limit: int | None = None
) -> tuple[ImageRows, np.ndarray | None, list[str] | None]:
    """The images below `folder` (folder-per-class gives labels), decoded and preprocessed when
    their rows are read.

    With `limit`, only that many are used, spread evenly over the sorted files so that every
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
    if not preprocess.size:
        _check_sizes(folder, files)
    mode = _pil_mode(preprocess)
    rows = ImageRows(files, lambda f: decode_image(f, preprocess, mode), preprocess.apply, folder)
    return rows, (np.asarray(labels, np.int64) if labels is not None else None), names


def _check_shape(x: Rows, spec: TensorSpec, source: str) -> None:
    if spec.shape is None:
        return
    expected = spec.shape[1:]
    if len(expected) != len(x.shape) - 1 or any(
        isinstance(e, int) and e != a for e, a in zip(expected, x.shape[1:], strict=False)
    ):
        dims = "x".join("?" if not isinstance(d, int) else str(d) for d in expected)
        raise DataError(
            f"{source}: samples are {'x'.join(map(str, x.shape[1:]))} but input {spec.name!r} expects "
            f"{dims}; check the resize, layout and channel settings"
        )


def _npz_feeds(
    path: Path, specs: Sequence[TensorSpec]
) -> tuple[dict[str, Rows], np.ndarray | None, list[str] | None]:
    npz = NpzColumns(path)
    wanted = [s.name for s in specs]
    stored = set(npz.names)
    if all(n in stored for n in wanted):
        keys = {n: n for n in wanted}
    elif len(specs) == 1 and "x" in stored:
        keys = {wanted[0]: "x"}
    else:
        npz.close()
        raise DataError(f"{path}: arrays {sorted(stored)} do not name the model's inputs {wanted}")
    feeds: dict[str, Rows] = {n: npz.column(k) for n, k in keys.items()}
    y = npz.small("y") if "y" in stored else None
    names = [str(n) for n in npz.small("labels")] if "labels" in stored else None
    return feeds, y, names


def load_dataset(
    source: str | Path | None,
    specs: Sequence[TensorSpec],
    preprocess: Preprocess | None = None,
    limit: int | None = None,
    seed: int = 0,
    synthetic_count: int = 64,
    label_names: list[str] | None = None,
) -> Dataset:
    """Data for a model whose inputs are `specs` (None: synthesise `synthetic_count` samples).

    Nothing is read beyond headers here: samples are read a batch at a time when used."""
    fixed = _fixed_batch(specs)
    if source is None or source == "":
        if fixed:  # synthesise batch by batch: the model's own batch size
            parts = [
                synthesize(specs, batch=fixed, seed=seed + i)
                for i in range(-(-synthetic_count // fixed))
            ]
            feeds = {s.name: np.concatenate([p[s.name] for p in parts]) for s in specs}
        else:
            feeds = synthesize(specs, batch=synthetic_count, seed=seed)
        source_name = f"synthetic (normal(0,1), seed {seed})"
        return Dataset(feeds, None, label_names, source_name, True, fixed_batch=fixed)
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    y, names = None, label_names
    columns: dict[str, Rows]
    if path.is_dir():
        if len(specs) != 1:
            raise DataError(
                f"{path}: image folders feed single-input models; this one has {len(specs)}"
            )
        images, y, folder_names = load_images(path, preprocess or Preprocess(), limit)
        columns = {specs[0].name: images}
        names = folder_names or names
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        if len(specs) != 1:
            raise DataError(
                f"{path}: an image feeds single-input models; this one has {len(specs)}"
            )
        recipe = preprocess or Preprocess()
        columns = {specs[0].name: recipe.apply(decode_image(path, recipe)[None])}
    elif path.suffix == ".npy":
        if len(specs) != 1:
            raise DataError(f"{path}: a .npy holds one array; the model has {len(specs)} inputs")
        arr: Rows = open_npy(path)
        if specs[0].shape is not None and len(arr.shape) == len(specs[0].shape) - 1:
            arr = np.asarray(arr)[None]  # a single sample without its batch axis
        columns = {specs[0].name: arr}
    elif path.suffix == ".npz":
        columns, y, stored_names = _npz_feeds(path, specs)
        names = stored_names or names
    else:
        raise DataError(f"{path}: data must be an image, an image folder, a .npy or a .npz file")
    dtypes = {}
    for spec in specs:
        if spec.dtype not in ("unknown", columns[spec.name].dtype.name):
            dtypes[spec.name] = spec.dtype
        _check_shape(columns[spec.name], spec, str(path))
    counts = {len(v) for v in columns.values()} | ({len(y)} if y is not None else set())
    if len(counts) != 1:
        raise DataError(f"{path}: inputs and labels have different sample counts {sorted(counts)}")
    if not next(iter(counts)):
        raise DataError(f"{path}: holds no samples")
    labels = None if y is None else np.asarray(y).astype(np.int64)
    dataset = Dataset(columns, labels, names, str(path), False, dtypes=dtypes, fixed_batch=fixed)
    return dataset.take(limit)


def _fixed_batch(specs: Sequence[TensorSpec]) -> int | None:
    """The batch size every input fixes (TFLite files often say 1), or None when it is free."""
    firsts = {s.shape[0] for s in specs if s.shape}
    first = next(iter(firsts)) if len(firsts) == 1 else None
    if isinstance(first, int) and first > 0:
        return first
    return None


# Calibration reads every sample the user gave, a batch at a time (memory stays flat), up to
# this many, as time grows with every sample. Measured on magika (MinMax): the median activation
# scale is final from 64 samples, the widest keep growing with rare outliers (90th percentile of
# the change to 3,888 samples: 36 % at 128, 25 % at 512, 24 % at 2,048). --calibration-samples
# sets a smaller number.
CALIBRATION_MAX = 4096
SYNTHETIC_CALIBRATION = 128  # synthetic samples when no data is given
# Holding out for the gate: most activation ranges are set by a few hundred samples (above), while
# the gate's interval narrows with every sample it judges (a 1-point gate at 2 % disagreement
# needs ~1,500),
# so the held-out part takes all but CALIBRATION_FLOOR when that is more than --holdout's share.
CALIBRATION_FLOOR = 256
HOLDOUT_MAX = 2000  # held-out samples at most (they are held in memory, read once)
HOLDOUT_BYTES = 512 * 2**20  # and at most this much of them


def calibration_and_evaluation(
    calibration: str | None,
    evaluation: str | None,
    specs: Sequence[TensorSpec],
    preprocess: Preprocess | None,
    calibration_samples: int | None,
    evaluation_samples: int | None,
    holdout: float,
    seed: int,
    label_names: list[str] | None = None,
) -> tuple[Dataset, Dataset, bool]:
    """Calibration data (read in batches when used), the data a variant is judged on (in
    memory), and whether that was held out.

    `calibration_samples` None means every sample given, up to CALIBRATION_MAX. With calibration
    data and no evaluation data, a disjoint part of it is held out for judging, so that a verdict
    rests on the user's real inputs, never on noise: `holdout` of them, or all but
    CALIBRATION_FLOOR when that is more (when a number of calibration samples is set: all beyond
    it if at least twice as many were given), at most HOLDOUT_MAX samples and HOLDOUT_BYTES; the
    rest calibrates. Without any data, both are synthetic (marked so)."""
    cap = min(calibration_samples or CALIBRATION_MAX, CALIBRATION_MAX)
    if calibration and not evaluation:
        pool = load_dataset(
            calibration, specs, preprocess, cap + HOLDOUT_MAX, seed, label_names=label_names
        )
        n = len(pool)
        if n >= 2:
            per_sample = pool.sample_bytes()
            if calibration_samples and n >= 2 * calibration_samples:
                first = calibration_samples
            else:
                held = max(round(n * holdout), n - CALIBRATION_FLOOR)
                held = min(held, HOLDOUT_MAX, HOLDOUT_BYTES // per_sample)
                first = min(max(n - held, 1), n - 1)
            calib, rest = pool.split(first, seed)
            held_count = min(HOLDOUT_BYTES // per_sample, evaluation_samples or n)
            held_out = rest.take(held_count).in_memory()
            held_out.source = (
                f"held out from {pool.source} (disjoint from the {len(calib)} samples used to "
                "calibrate)"
            )
            return calib.take(cap), held_out, True
    calib = load_dataset(
        calibration,
        specs,
        preprocess,
        cap,
        seed,
        synthetic_count=calibration_samples or SYNTHETIC_CALIBRATION,
        label_names=label_names,
    )
    judged = load_dataset(
        evaluation, specs, preprocess, evaluation_samples, seed + 1, label_names=label_names
    ).in_memory()
    return calib, judged, False


def read_labels(path: Path | None) -> list[str] | None:
    """Label names from a text file, one per line (None when no file is given)."""
    if path is None:
        return None
    lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    return [ln for ln in lines if ln]
