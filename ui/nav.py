"""The app's pages, in menu order: one list that app.py, the home page and the tests share;
and the server start-up hook that lets app.py's st.navigation route them from the first request."""

from __future__ import annotations

import contextlib
import logging
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
            "LeNet5, AlexNet, VGG, GoogLeNet, ResNet layer by layer: shapes, parameters, FLOPs; design your own."),
    PageDef("Models", "pages/feature_maps.py", "Feature maps", ":material/layers:", "feature-maps",
            "What each layer sees in your image, predictions and Grad-CAM; draw a digit and watch it read."),
    PageDef("Models", "pages/microscope.py", "Microscope", ":material/biotech:", "microscope",
            "What a network learned: filters over epochs, weight and gradient health, a page per channel."),
    PageDef("Models", "pages/attribution.py", "Attribution", ":material/ads_click:", "attribution",
            "Eight attribution methods side by side, the sanity check, deletion curves; fool it with FGSM/PGD."),
    PageDef("Models", "pages/projector.py", "Projector", ":material/scatter_plot:", "projector",
            "The test set's features in PCA, t-SNE and UMAP: which images the network groups together."),
    PageDef("Training", "pages/training.py", "Train", ":material/model_training:", "train",
            "Train LeNet5 or a ResNet with live loss and accuracy, stop and resume."),
    PageDef("Training", "pages/runs.py", "Runs", ":material/monitoring:", "runs",
            "Compare runs, confusion matrices, mistakes, feature maps across epochs."),
    PageDef("Training", "pages/class_board.py", "Class board", ":material/leaderboard:", "class",
            "Everyone's finished runs ranked by test accuracy per dataset; the teacher's view of usage and quotas."),
]


# ------------------------------------------------------------------ server start-up


def route_with_st_navigation_from_the_start() -> bool:
    """Take Streamlit out of its old pages/-folder mode before the first session: True if done.

    Streamlit (1.61 to 1.67 at least) decides once per process, in `PagesManager.__init__` (the
    first session's), that an app whose script sits next to a `pages/` folder is an old-style
    (v1) multipage app: the class attribute `PagesManager.uses_pages_directory` becomes True,
    and `ScriptRunner._run_script` then routes each run through `_mpa_v1`, a navigation built
    from the file names in pages/. So on a fresh server the first request for /train (file
    pages/training.py) finds no v1 page of that name, and `commands.navigation._navigation`
    sends the browser `page_not_found` ("Page not found ... Running the app's main page")
    *before* app.py runs; app.py's `st.navigation` then shows the right page under that modal.
    /runs (pages/runs.py) ran that file alone, without app.py's menu and sidebar. Only the
    first call of `st.navigation` in the process sets the attribute to False.

    Setting it to False ourselves is what that first `st.navigation` call would do, only
    earlier: PagesManager keeps a value that is not None, and the app calls `st.navigation`
    on every run anyway. It must happen before the first session, which no code in an app
    script can do, so app.py's st.App runs it from its lifespan (`server_lifespan`). The
    attribute is private: if a Streamlit upgrade drops it, this logs a warning and returns
    False (the app still runs, perhaps with that modal on a fresh server's first request),
    and tests/browser/test_server_start.py fails.
    """
    import streamlit

    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # moved or gone
        PagesManager = None
    if PagesManager is None or not hasattr(PagesManager, "uses_pages_directory"):
        logging.getLogger(__name__).warning(
            "streamlit %s has no PagesManager.uses_pages_directory: a bookmarked page may open "
            "under a 'Page not found' dialog on a fresh server (see ui/nav.py)", streamlit.__version__)
        return False
    PagesManager.uses_pages_directory = False
    return True


@contextlib.asynccontextmanager
async def server_lifespan(_app):
    """st.App lifespan (app.py): runs once when the server starts, before any session."""
    route_with_st_navigation_from_the_start()
    from ui.auth import startup_check

    startup_check()  # one line on stderr: sign-in on, or what is wrong with [auth]
    yield
