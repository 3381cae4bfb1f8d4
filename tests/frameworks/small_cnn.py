"""A small CNN holding every kind of layer gpuconv.torch.convert swaps (conv, depthwise, 1x1,
reflect-padded conv, max/avg/adaptive pooling, transposed conv) and one it must leave alone (a
Conv2d subclass with a forward of its own)."""
import torch

nn, F = torch.nn, torch.nn.functional


class StandardizedConv2d(nn.Conv2d):
    """A subclass with its own forward: convert must not replace that forward."""

    def forward(self, x):
        w = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 16, 1, bias=False)
        self.reflect = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
        self.standardized = StandardizedConv2d(16, 16, 1)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.smooth = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.depthwise(x))
        x = self.standardized(self.reflect(self.pointwise(x)))
        x = self.smooth(self.pool(x))
        return self.head(F.relu(self.up(x)))


SWAPPED = {"stem": "Conv2d", "depthwise": "Conv2d", "pointwise": "Conv2d", "reflect": "Conv2d",
           "pool": "MaxPool2d", "smooth": "AvgPool2d", "up": "ConvTranspose2d",
           "head.0": "AdaptiveAvgPool2d"}
