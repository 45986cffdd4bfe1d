"""Image request bodies (`Content-Type: image/*`): decoded and preprocessed with the recipe saved
at export (config.json "preprocess"), the same steps Dockyard validated the model with
(workflows/data.py: convert, bilinear resize, channel order, scale, mean, std, layout).

Like decode.py this runs in the server's threads or its decoding process, never in the event
loop: decoding a JPEG holds the GIL. Pillow is imported here only, so a server without images
never loads it."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from server.decode import RequestError, Signature

MAX_IMAGE_PIXELS = 4096 * 4096  # a larger image (a decompression bomb, say) is refused unread


def image_feeds(
    body: bytes, recipe: dict[str, Any], signature: Signature, max_pixels: int = MAX_IMAGE_PIXELS
) -> dict[str, np.ndarray]:
    """One image as a batch of one for the model's single input."""
    from PIL import Image

    channels = str(recipe.get("channels", "RGB")).upper()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(body))  # reads the header only
            if img.width * img.height > max_pixels:
                raise RequestError(
                    f"the image is {img.width}x{img.height} pixels; the limit is {max_pixels} "
                    "(MAX_IMAGE_PIXELS)",
                    413,
                )
            img = img.convert("L" if channels == "L" else "RGB")  # decodes it
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestError(f"the image is too large to decode: {exc}", 413) from None
    except OSError as exc:  # PIL.UnidentifiedImageError, truncated or corrupt data
        raise RequestError(f"the body is not an image this server can read: {exc}") from None
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
    x = np.ascontiguousarray(x[None], dtype=np.float32)
    name = signature.names[0]
    return {name: signature.check(name, x.astype(signature.info(name).dtype, copy=False))}
