"""Image request bodies (`Content-Type: image/*`): decoded and preprocessed with the recipe saved
at export ("preprocess" in the export's config), the same steps Dockyard validated the model with
(workflows/data.py: convert, bilinear resize, channel order, scale, mean, std, layout).

One module for both servers that take images: the Docker export's (server/decode.py) and the
TorchServe handler (archived beside it in the .mar). It therefore imports nothing of either: its
errors are ImageError, which each server answers in its own way.

It runs in a server's threads or decoding process, never in an event loop: decoding a JPEG holds
the GIL. Pillow is imported here only, so a server without images never loads it."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

MAX_IMAGE_PIXELS = 4096 * 4096  # a larger image (a decompression bomb, say) is refused unread


class ImageError(ValueError):
    """An image over the pixel limit (too_large, the message says which limit) or a body that is
    no image Pillow can read (the message is Pillow's reason; the caller says what was sent)."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def image_batch(
    body: bytes,
    recipe: dict[str, Any],
    max_pixels: int = MAX_IMAGE_PIXELS,
    limit_name: str = "MAX_IMAGE_PIXELS",
) -> np.ndarray:
    """One encoded image (PNG, JPEG, ...) as a float32 batch of one, preprocessed by `recipe`.
    `limit_name` is how the pixel limit is set, named when an image is over it."""
    from PIL import Image

    channels = str(recipe.get("channels", "RGB")).upper()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(body))  # reads the header only
            if img.width * img.height > max_pixels:
                raise ImageError(
                    f"the image is {img.width}x{img.height} pixels; the limit is {max_pixels} "
                    f"({limit_name})",
                    too_large=True,
                )
            img = img.convert("L" if channels == "L" else "RGB")  # decodes it
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to decode: {exc}", too_large=True) from None
    except OSError as exc:  # PIL.UnidentifiedImageError, truncated or corrupt data
        raise ImageError(str(exc)) from None
    size = recipe.get("size")
    if size:
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(img)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if channels == "BGR":
        pixels = pixels[:, :, ::-1]
    x = pixels.astype(np.float32) * np.float32(recipe.get("scale", 1 / 255))
    x = (x - np.asarray(recipe.get("mean", [0.0]), np.float32)) / np.asarray(
        recipe.get("std", [1.0]), np.float32
    )
    if str(recipe.get("layout", "NCHW")).upper() == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.float32)
