"""A user's model library, as a cluster image would carry it: the Ray head the tests start has this
folder on its PYTHONPATH, so trials on it import this module like a user's installed package."""
from torch import nn


def tiny_cnn(num_outputs: int, in_channels: int):
    """A small conv net with batch norm: three cut points and a head (n = 1..3)."""
    net = nn.Sequential()
    net.add_module("block1", nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                           nn.MaxPool2d(2)))
    net.add_module("block2", nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                           nn.MaxPool2d(2)))
    net.add_module("block3", nn.Sequential(nn.Flatten(), nn.Linear(8 * 7 * 7, 32), nn.ReLU()))
    net.add_module("head", nn.Linear(32, num_outputs))
    return net, ["block1", "block2", "block3", "head"]
