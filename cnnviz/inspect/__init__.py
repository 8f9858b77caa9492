"""Looking inside a model: what each layer does to the shape, what it sees, what it computes.

Modules:
- `summary`: layer-by-layer output shapes, parameters and FLOPs from a real forward pass
  (`torch.utils.flop_counter`), and the depth profile.
- `features`: feature maps of any layer and Grad-CAM, with hooks owned by a context manager;
  top-k predictions; the pictures of them.
- `receptive`: receptive fields computed through the network's real graph.
- `loading`: a model ready to look inside: random, shipped, a run's or uploaded checkpoint,
  cached torchvision weights.
- `ideas`: worked examples of the ideas behind the classic networks, with real layers.
- the Microscope's parts: `microscope` (filter grids, weight histograms and norms over saved
  epochs), `topk` (the test images that drive a channel most and least, batched within a memory
  budget, cached on disk), `featurevis` (the input that maximises a channel or a class logit, by
  gradient ascent), `layerstats` (per-layer weight/gradient norms and update ratios that the
  trainer logs each epoch, dead ReLUs, the vanishing-gradient lesson), `msplots` (its figures).
"""

from . import features, featurevis, ideas, layerstats, microscope, receptive, summary, topk, loading
from .features import feature_maps, grad_cam
from .receptive import trace
from .summary import Summary, summarize

__all__ = ["features", "featurevis", "ideas", "layerstats", "microscope", "receptive", "summary", "topk", "loading", "feature_maps", "grad_cam", "trace",
           "Summary", "summarize"]
