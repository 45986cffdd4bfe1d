"""EfficientNet-Lite0's architecture (Tan & Le 2019; the "lite" variant: ReLU6, no
squeeze-and-excite, fixed stem and head): 4.65 M parameters, 0.4 GMACs on a 224x224x3 image,
1,000 logits. The serving benchmark builds it with seeded random weights: the project downloads
no model from a hub, and a server's cost does not depend on what the weights are.

Input: float32 [batch, 3, 224, 224]. Output: float32 [batch, 1000].
"""

import torch
from torch import nn

# (expansion, kernel, stride, output channels, repeats) per stage, as in the paper's Table 1.
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # fmt: skip


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expansion
        layers = [_conv(cin, mid, 1)] if expansion != 1 else []
        layers += [
            _conv(mid, mid, kernel, stride, groups=mid),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 32, 3, 2)]
        cin = 32
        for expansion, kernel, stride, cout, repeats in STAGES:
            for i in range(repeats):
                layers.append(MBConv(cin, cout, expansion, kernel, stride if i == 0 else 1))
                cin = cout
        layers.append(_conv(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
