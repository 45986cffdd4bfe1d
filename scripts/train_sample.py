"""Train the bundled sample (resources/sample/) on scikit-learn's digits; deterministic.

Writes the weights (safetensors), a torch.export program with a dynamic batch (.pt2), the
held-back test split (digits_test.npz: x float32 [N,1,8,8] scaled to 0..1, y int64), 256
calibration samples drawn from the training split (digits_calibration.npz), the label names and
sample.json (preprocessing and the accuracy measured here).

    python scripts/train_sample.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "sample"
sys.path.insert(0, str(SAMPLE))
from digits_cnn import DigitsCNN  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _epoch in range(30):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    print(f"test accuracy {accuracy:.4f} on {len(y_test)} digits (last loss {loss.item():.4f})")

    save_file(model.state_dict(), str(SAMPLE / "digits_cnn.safetensors"))
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        model, (torch.from_numpy(x_test[:2]),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, str(SAMPLE / "digits_cnn.pt2"))
    np.savez_compressed(SAMPLE / "digits_test.npz", x=x_test, y=y_test)
    # Calibration data for static quantization comes from the training split, never the test split.
    rng = np.random.default_rng(0)
    calib = rng.choice(len(x_train), size=256, replace=False)
    np.savez_compressed(SAMPLE / "digits_calibration.npz", x=x_train[calib], y=y_train[calib])
    labels = [str(i) for i in range(10)]
    (SAMPLE / "labels.txt").write_text("\n".join(labels) + "\n")
    meta = {
        "name": "digits_cnn",
        "description": "Small CNN for 8x8 handwritten digits (scikit-learn digits, BSD-3).",
        "input": {"name": "x", "layout": "NCHW", "shape": [None, 1, 8, 8], "dtype": "float32"},
        "preprocessing": {"scale": 1 / 16.0, "mean": [0.0], "std": [1.0], "channel_order": "gray"},
        "labels": labels,
        "test_split": {"file": "digits_test.npz", "samples": len(y_test), "random_state": 0},
        "calibration_split": {"file": "digits_calibration.npz", "samples": 256, "from": "train"},
        "test_accuracy": round(accuracy, 4),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_with": f"torch {torch.__version__}",
    }
    (SAMPLE / "sample.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
