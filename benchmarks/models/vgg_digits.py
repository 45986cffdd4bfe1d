"""A VGG-style CNN (Simonyan & Zisserman 2014: stacks of 3x3 conv + batch norm + ReLU, channels
doubling after each 2x2 max-pool; global average pooling before one linear layer, as in later VGG
variants) sized for scikit-learn's digits upscaled to 16x16: 1.15 M parameters, 38 M MACs.

`train()` fits it here, deterministically, on 1,297 of the 1,797 digits scikit-learn ships and
keeps the other 500 for evaluation: the compression tests' and benchmark's "real CNN on a real
labelled dataset" (issue 15), with nothing downloaded.

Input: float32 [batch, 1, 16, 16] (0..1). Output: float32 [batch, 10] logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

HELD_OUT = 500
SIDE = 16


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class VGGDigits(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(1, 64), *_block(64, 64), nn.MaxPool2d(2),
            *_block(64, 128), *_block(128, 128), nn.MaxPool2d(2),
            *_block(128, 256), *_block(256, 256), nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.classifier = nn.Linear(256, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def digits16() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): scikit-learn's digits at 16x16, a seeded split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)[:, None])
    x = nn.functional.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    x, y = x.numpy(), digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:-HELD_OUT], order[-HELD_OUT:]
    return x[train], y[train], x[test], y[test]


def train(folder: Path, epochs: int = 8, seed: int = 0) -> dict[str, Path]:
    """Fit the model and write its weights, the unlabelled training images and the labelled
    held-out split into `folder`; returns their paths."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = digits16()
    model = VGGDigits()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "weights": folder / "vgg_digits.safetensors",
        "model_file": Path(__file__),
        "train": folder / "digits16_train_unlabelled.npz",
        "test": folder / "digits16_test.npz",
    }
    save_file(model.state_dict(), str(paths["weights"]))
    np.savez(paths["train"], x=x_train)  # no labels: distillation learns from the teacher
    np.savez(paths["test"], x=x_test, y=y_test)
    return paths
