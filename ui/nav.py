"""The app's pages, in menu order: one list that app.py, the home page and the tests share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageDef:
    section: str
    path: str
    title: str
    icon: str
    url: str
    blurb: str


PAGES: list[PageDef] = [
    PageDef("", "pages/home.py", "Home", ":material/home:", "home", "What cnnviz is and what runs it."),
    PageDef("Operations", "pages/convolution.py", "Convolution", ":material/grid_on:", "convolution",
            "Kernels, stride, padding and dilation on your image; weight sharing and receptive fields."),
    PageDef("Operations", "pages/upsample_pooling.py", "Upsample & pooling", ":material/zoom_in:", "upsample-pooling",
            "Every interpolation mode, transposed convolution, and max/avg/LP/adaptive pooling."),
    PageDef("Operations", "pages/batchnorm.py", "BatchNorm", ":material/equalizer:", "batchnorm",
            "Per-channel statistics, running estimates, train vs eval, the formula worked through."),
    PageDef("Data", "pages/datasets.py", "Datasets", ":material/dataset:", "datasets",
            "Built-in shapes and digits, CIFAR-10, MNIST, your own folders and zips: samples, counts, mean/std."),
    PageDef("Data", "pages/augmentation.py", "Augmentation studio", ":material/auto_fix_high:", "augmentation",
            "Build a torchvision v2 pipeline, watch each step, export code and JSON."),
    PageDef("Models", "pages/architectures.py", "Architectures", ":material/account_tree:", "architectures",
            "LeNet5, AlexNet, VGG, GoogLeNet, ResNet layer by layer: shapes, parameters, FLOPs."),
    PageDef("Models", "pages/feature_maps.py", "Feature maps", ":material/layers:", "feature-maps",
            "What each layer sees in your image, predictions and Grad-CAM; draw a digit and watch it read."),
    PageDef("Training", "pages/training.py", "Train", ":material/model_training:", "train",
            "Train LeNet5 or a ResNet with live loss and accuracy, stop and resume."),
    PageDef("Training", "pages/runs.py", "Runs", ":material/monitoring:", "runs",
            "Compare runs, confusion matrices, mistakes, feature maps across epochs."),
]
