"""MTCNN's ONet (the third stage: face score, box and five landmarks on a 48x48 crop), the class
as facenet-pytorch 2.6.0 defines it (facenet_pytorch/models/mtcnn.py, MIT licence, (c) 2019
Timothy Esler), copied so that its weights, a plain state dict in that package's wheel, load
without installing the package. The real-model suite exports it with torch.export to a .pt2:
few packages ship one."""

from __future__ import annotations

import torch
from torch import nn


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


def export_pt2(weights: str, target: str) -> ONet:
    """Load the wheel's state dict safely (weights_only) and torch.export ONet to `target`,
    batch dynamic; returns the eager module (the reference)."""
    model = ONet().eval()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        model, (torch.zeros(2, 3, 48, 48),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, target)
    return model
