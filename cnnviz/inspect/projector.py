"""An embedding projector: what the network groups together.

`extract` runs a model over a test set (uint8 images, prepared as the trainer prepares them) in
bounded batches and keeps one vector per image: the penultimate features (the input of the last
`nn.Linear`) or any layer's output, global-average-pooled when it is a map; with the predicted
class and its probability. `reduce` brings the vectors to 2 or 3 dimensions:

- **PCA** with `torch.pca_lowrank` (centred), with the share of variance each axis explains;
  `PcaBasis` fitted on one set of vectors projects others (the epoch scrubber fits the last
  epoch, so positions are comparable across epochs);
- **t-SNE** with openTSNE (its callbacks report progress every 50 iterations);
- **UMAP** with umap-learn, imported only when asked for (numba compiles it on first use).

`Job` runs such work in a background thread with a progress fraction and message, one at a
time (`RUN_SLOT`: the server's cores are shared). `sample_indices` draws a stratified, seeded
sample when a test set is larger than the limit. `scatter` draws the points with plotly, each
carrying its dataset index (`customdata`), and `selected_indices` maps a selection event back to
those indices. Memory: sized against the per-request budget before anything is allocated.
No streamlit here.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import numbers
import os
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import features
from ..limits import check_budget, fit_batch

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
METHODS = ("PCA", "t-SNE", "UMAP")
MAX_POINTS = 10_000
PENULTIMATE = "penultimate"    # the input of the last nn.Linear


def _noop(_f: float, _m: str) -> None:
    return None


# ---------------------------------------------------------------- features


def penultimate_layer(model: nn.Module) -> str | None:
    """The name of the last `nn.Linear` module (its input is the penultimate representation)."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    return last


def sample_indices(labels: Sequence[int] | np.ndarray | torch.Tensor, limit: int = MAX_POINTS,
                   seed: int = 0) -> np.ndarray:
    """All positions when there are at most `limit`, else a stratified seeded sample: each class keeps
    its share (rounded, at least one image per class present). Sorted."""
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    n = len(y)
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = np.maximum(1, np.floor(counts * limit / n)).astype(int)
    spare = limit - quota.sum()
    if spare > 0:  # the largest remainders get the rest
        rem = counts * limit / n - np.floor(counts * limit / n)
        for i in np.argsort(-rem)[:spare]:
            quota[i] += 1
    out = [rng.choice(np.nonzero(y == c)[0], size=min(q, cnt), replace=False)
           for c, q, cnt in zip(classes, quota, counts)]
    return np.sort(np.concatenate(out))[:limit]


@dataclass
class Features:
    """One vector per image, with the model's prediction."""

    vectors: np.ndarray          # (N, D) float32
    preds: np.ndarray            # (N,) int64
    confidence: np.ndarray       # (N,) float32: probability of the predicted class
    layer: str                   # "penultimate (input of fc)" or the layer's name
    seconds: float = 0.0


def extract(model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], *,
            input_size: int | None = None, layer: str = PENULTIMATE, batch_size: int | None = None,
            progress: Progress | None = None) -> Features:
    """Vectors of `images` (uint8 (N,C,H,W)) at `layer` (PENULTIMATE or a module name; maps are
    averaged over positions), in batches sized against the budget."""
    from ..train.evaluate import prepare_inputs

    progress = progress or _noop
    t0 = time.perf_counter()
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n, c = int(images.shape[0]), int(images.shape[1])
    size = int(input_size or images.shape[-1])
    shape = (c, size, size)
    infos = features.list_layers(model, shape)
    if layer == PENULTIMATE:
        name = penultimate_layer(model)
        if name is None:
            raise ValueError(f"{type(model).__name__} has no Linear layer: pick a layer to project.")
        mod = dict(model.named_modules())[name]
        dim = int(mod.in_features)
        label = f"penultimate (the {dim} inputs of `{name}`)"
    else:
        by = {li.name: li for li in infos}
        if layer not in by:
            raise ValueError(f"No layer named {layer!r} in {type(model).__name__}.")
        name, dim, label = layer, int(by[layer].shape[1]), f"`{layer}`" + (" (averaged over positions)"
                                                                       if len(by[layer].shape) == 4 else "")
    per_image = 4.0 * (sum(int(np.prod(li.shape[1:])) for li in infos) + c * size * size) * 2
    check_budget(f"{n:,} feature vectors of {dim:,} values", n * (dim + 2) * 4.0 + per_image)
    batch = batch_size or fit_batch(per_image, fixed=n * (dim + 2) * 4.0, cap=500, what="one image's activations")
    base, _, call = name.partition(":")
    call_no = int(call) if call else 1
    got: list[torch.Tensor] = []
    count = [0]

    def grab(t: torch.Tensor) -> None:
        t = t.detach().float()
        if t.dim() == 4:
            t = t.mean(dim=(2, 3))
        got.append(t.flatten(1).cpu())

    def pre(_m, inputs):
        grab(inputs[0])

    def post(_m, _inp, out):
        count[0] += 1
        if count[0] == call_no:
            grab(features._first_tensor(out))

    mod = dict(model.named_modules())[base]
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    vecs, preds, conf = [], [], []
    handle = mod.register_forward_pre_hook(pre) if layer == PENULTIMATE else mod.register_forward_hook(post)
    try:
        with features._eval(model, True), torch.inference_mode():
            for i in range(0, n, batch):
                got.clear()
                count[0] = 0
                x = prepare_inputs(images[i:i + batch].to(dev), mean, std, size)
                probs = features._first_tensor(model(x)).float().softmax(-1).cpu()
                if len(got) != 1:
                    raise ValueError(f"Layer {name} ran {len(got)} times in one forward pass; pick another.")
                vecs.append(got[0])
                c_, p_ = probs.max(-1)
                preds.append(p_)
                conf.append(c_)
                progress(min(1.0, (i + batch) / max(n, 1)), f"features of {min(n, i + batch):,} / {n:,} images")
    finally:
        handle.remove()
    v = torch.cat(vecs).numpy().astype(np.float32) if vecs else np.zeros((0, dim), np.float32)
    return Features(v, torch.cat(preds).numpy().astype(np.int64) if preds else np.zeros(0, np.int64),
                    torch.cat(conf).numpy().astype(np.float32) if conf else np.zeros(0, np.float32),
                    label, time.perf_counter() - t0)


# ---------------------------------------------------------------- reductions


@dataclass
class PcaBasis:
    """A PCA fitted on one set of vectors: its mean, axes and the variance each explains."""

    mean: np.ndarray             # (D,)
    axes: np.ndarray             # (D, k)
    explained: np.ndarray        # (k,) share of the total variance

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return ((np.asarray(vectors, np.float32) - self.mean) @ self.axes).astype(np.float32)


def fit_pca(vectors: np.ndarray, dim: int = 2, seed: int = 0) -> PcaBasis:
    """PCA with `torch.pca_lowrank` (randomised; seeded, a few power iterations), centred."""
    a = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    n, d = a.shape
    k = max(1, min(int(dim), d, n))
    mean = a.mean(0)
    centred = a - mean
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _u, s, v = torch.pca_lowrank(centred, q=min(k + 4, d, n), center=False, niter=4)
    total = float((centred ** 2).sum()) or 1.0
    axes = v[:, :k].numpy()
    # a sign convention so the same data give the same picture: the largest loading of each axis positive
    signs = np.sign(axes[np.abs(axes).argmax(0), np.arange(k)])
    axes = axes * np.where(signs == 0, 1, signs)
    out_dim = np.zeros((d, int(dim)), np.float32)
    out_dim[:, :k] = axes
    explained = np.zeros(int(dim), np.float32)
    explained[:k] = (s[:k] ** 2).numpy() / total
    return PcaBasis(mean.numpy(), out_dim, explained)


class _TqdmProgress(io.StringIO):
    """A file for tqdm (umap-learn's epochs): each 'i/n' it writes becomes a progress call."""

    def __init__(self, progress: Progress, lo: float, hi: float, what: str) -> None:
        super().__init__()
        self._p, self._lo, self._hi, self._what = progress, lo, hi, what

    def write(self, s: str) -> int:
        m = re.findall(r"(\d+)/(\d+)", s)
        if m:
            i, n = (int(v) for v in m[-1])
            self._p(self._lo + (self._hi - self._lo) * i / max(n, 1), f"{self._what}: epoch {i} of {n}")
        return len(s)


@dataclass
class Projection:
    coords: np.ndarray           # (N, dim) float32
    method: str
    dim: int
    seconds: float
    explained: np.ndarray | None = None    # PCA: share of variance per axis
    params: dict = field(default_factory=dict)


def reduce(vectors: np.ndarray, method: str = "PCA", dim: int = 2, *, seed: int = 0, perplexity: float = 30.0,
           neighbours: int = 15, progress: Progress | None = None,
           cancelled: Callable[[], bool] | None = None) -> Projection:
    """`vectors` (N, D) to (N, dim) with PCA, t-SNE (openTSNE) or UMAP (umap-learn)."""
    progress = progress or _noop
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if dim not in (2, 3):
        raise ValueError("dim must be 2 or 3")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 5:
        raise ValueError(f"{n} points are too few to project (at least 5).")
    t0 = time.perf_counter()
    if method == "PCA":
        basis = fit_pca(x, dim, seed)
        progress(1.0, "PCA done")
        return Projection(basis.project(x), method, dim, time.perf_counter() - t0, basis.explained)
    # both work on the first 50 principal components, as is usual (and faster)
    if x.shape[1] > 50:
        progress(0.02, "PCA to 50 dimensions first")
        x = fit_pca(x, 50, seed).project(x)
    threads = max(1, min(2, os.cpu_count() or 1))
    if method == "t-SNE":
        import openTSNE

        perp = float(min(perplexity, max(2.0, (n - 1) / 3.0)))
        total = 750
        seen = [0]

        def callback(iteration, error, embedding):
            seen[0] += 50
            progress(0.2 + 0.8 * min(seen[0], total) / total,
                     f"t-SNE: iteration {min(seen[0], total)} of {total} (KL divergence {error:.2f})")
            return bool(cancelled and cancelled())

        progress(0.05, f"t-SNE: nearest neighbours of {n:,} points (perplexity {perp:g})")
        tsne = openTSNE.TSNE(n_components=dim, perplexity=perp, n_jobs=threads, random_state=seed,
                             callbacks=callback, callbacks_every_iters=50, early_exaggeration_iter=250, n_iter=500,
                             # Barnes-Hut below 10k points (FFT's fixed cost per iteration dominates there;
                             # openTSNE's own rule), FFT above; 3-D: Barnes-Hut only
                             negative_gradient_method="bh" if dim == 3 or n < 10_000 else "fft", verbose=False)
        coords = np.asarray(tsne.fit(x), dtype=np.float32)
        params = {"perplexity": perp}
    else:
        progress(0.02, "UMAP: loading umap-learn (numba compiles it on first use)")
        import umap  # noqa: PLC0415  (slow import: only when asked for)

        k = int(min(neighbours, n - 1))
        progress(0.15, f"UMAP: nearest neighbours of {n:,} points ({k} each)")
        reducer = umap.UMAP(n_components=dim, n_neighbors=k, random_state=seed, n_jobs=1, verbose=False,
                            tqdm_kwds={"disable": False, "file": _TqdmProgress(progress, 0.4, 1.0, "UMAP"),
                                       "mininterval": 0.25, "ascii": True})
        coords = np.asarray(reducer.fit_transform(x), dtype=np.float32)
        params = {"neighbours": k}
    progress(1.0, f"{method} done")
    return Projection(coords, method, dim, time.perf_counter() - t0, None, params)


def silhouette(vectors: np.ndarray, labels: np.ndarray, sample: int = 2000, seed: int = 0) -> float:
    """Silhouette score of `labels` in the space of `vectors` (-1..1; on a seeded sample of at most
    `sample` points); NaN with fewer than two classes."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return float("nan")
    size = min(int(sample), len(labels))
    return float(silhouette_score(np.asarray(vectors, np.float32), labels, sample_size=size, random_state=seed))


def epochs_in_last_basis(vectors_by_epoch: dict[int, np.ndarray], dim: int = 2, seed: int = 0
                         ) -> tuple[dict[int, np.ndarray], PcaBasis]:
    """Each epoch's vectors projected on the PCA axes fitted on the last epoch's (comparable positions)."""
    if not vectors_by_epoch:
        raise ValueError("no epochs to project")
    last = max(vectors_by_epoch)
    basis = fit_pca(vectors_by_epoch[last], dim, seed)
    return {e: basis.project(v) for e, v in sorted(vectors_by_epoch.items())}, basis


# ---------------------------------------------------------------- background jobs

RUN_SLOT = threading.Semaphore(1)     # one projection computes at a time (2 shared cores)
_JOBS: set["Job"] = set()
_IDS = itertools.count(1)
_JOBS_LOCK = threading.Lock()


class Job:
    """`fn(progress, cancelled)` in a daemon thread; `.fraction`, `.message`, `.result`, `.error`."""

    def __init__(self, fn: Callable[[Progress, Callable[[], bool]], Any], name: str = "projection",
                 after: "Job | None" = None) -> None:
        self.name = name
        self.id = next(_IDS)          # unique for the process (a cache key for what is drawn from it)
        self.after = after            # a job whose result this one needs: waited for before taking the slot
        self.fraction = 0.0
        self.message = "waiting for another projection to finish"
        self.result: Any = None
        self.error: str | None = None
        self.started = time.time()
        self.finished: float | None = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._fn = fn
        with _JOBS_LOCK:
            _JOBS.add(self)
        self._thread = threading.Thread(target=self._run, name=f"cnnviz-{name}", daemon=True)
        self._thread.start()

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction = float(max(0.0, min(1.0, fraction)))
        self.message = message

    def _run(self) -> None:
        try:
            if self.after is not None:
                self.message = f"waiting for {self.after.name}"
                self.after._done.wait()
            with RUN_SLOT:
                self.message = "starting"
                self.result = self._fn(self._progress, self._cancel.is_set)
        except (ValueError, FileNotFoundError, MemoryError, RuntimeError, ImportError) as exc:
            self.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.info("projection job %s failed: %s", self.name, self.error)
        except Exception as exc:  # noqa: BLE001 - shown on the page with its type, logged in full
            self.error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            log.error("projection job %s crashed:\n%s", self.name, traceback.format_exc())
        finally:
            self.finished = time.time()
            self.fraction = 1.0 if self.error is None else self.fraction
            self._done.set()
            with _JOBS_LOCK:
                _JOBS.discard(self)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> Any:
        """The result (blocking up to `timeout` s); ValueError with the job's error if it failed."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.name} still running after {timeout} s")
        if self.error is not None:
            raise ValueError(self.error)
        return self.result


def wait_jobs(timeout: float = 300) -> None:
    """Wait for every running job (tests); TimeoutError if one outlasts `timeout` s."""
    deadline = time.time() + timeout
    while True:
        with _JOBS_LOCK:
            running = list(_JOBS)
        if not running:
            return
        for job in running:
            job._done.wait(max(0.0, deadline - time.time()))
            if not job.done:
                raise TimeoutError(f"{job.name} still running after {timeout} s")


# ---------------------------------------------------------------- the picture


COLOUR_BY = ("true class", "predicted class", "right / wrong")
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]


def scatter(coords: np.ndarray, indices: np.ndarray, labels: np.ndarray, preds: np.ndarray,
            confidence: np.ndarray, classes: Sequence[str], colour_by: str = "true class",
            ranges: Sequence[Sequence[float]] | None = None, title: str = ""):
    """A plotly scatter (2-D: WebGL, selectable; 3-D: rotatable) of `coords`, one trace per colour group.
    Each point's `customdata` is [dataset index, position in `coords`] (the position is its tile in a sprite
    sheet of the same images, cnnviz.inspect.sprites); its hover names index, true and predicted class."""
    import plotly.graph_objects as go

    coords = np.asarray(coords)
    dim = coords.shape[1]
    if colour_by == "true class":
        groups, names = labels, list(classes)
    elif colour_by == "predicted class":
        groups, names = preds, list(classes)
    elif colour_by == "right / wrong":
        groups, names = (preds != labels).astype(int), ["right", "wrong"]
    else:
        raise ValueError(f"colour_by must be one of {COLOUR_BY}")
    fig = go.Figure()
    for g in range(len(names)):
        sel = np.nonzero(groups == g)[0]
        if not len(sel):
            continue
        colour = (["#21918c", "#d62728"][g] if colour_by == "right / wrong" else _PALETTE[g % len(_PALETTE)])
        hover = [f"#{int(indices[i])}: {classes[int(labels[i])]}<br>predicted {classes[int(preds[i])]} "
                 f"({100 * float(confidence[i]):.0f}%)" for i in sel]
        common = dict(name=f"{names[g]} ({len(sel):,})",
                      customdata=np.stack([np.asarray(indices)[sel], sel], axis=1),
                      hovertext=hover, hoverinfo="text", mode="markers")
        if dim == 2:
            fig.add_trace(go.Scattergl(x=coords[sel, 0], y=coords[sel, 1],
                                       marker=dict(size=5, color=colour, opacity=0.75), **common))
        else:
            fig.add_trace(go.Scatter3d(x=coords[sel, 0], y=coords[sel, 1], z=coords[sel, 2],
                                       marker=dict(size=2.5, color=colour, opacity=0.8), **common))
    layout: dict[str, Any] = dict(height=560, margin=dict(l=10, r=10, t=30 if title else 10, b=10),
                                  legend=dict(itemsizing="constant"), title=title or None)
    if dim == 2:
        layout.update(dragmode="lasso", xaxis=dict(showticklabels=False, title=""),
                      yaxis=dict(showticklabels=False, title="", scaleanchor="x"))
        if ranges is not None:
            layout["xaxis"]["range"], layout["yaxis"]["range"] = list(ranges[0]), list(ranges[1])
    fig.update_layout(**layout)
    return fig


def padded_ranges(coords_list: Sequence[np.ndarray], pad: float = 0.05) -> list[list[float]]:
    """Axis ranges that hold every set of coordinates (for pictures that must not jump between epochs)."""
    allc = np.concatenate([np.asarray(c) for c in coords_list])
    lo, hi = allc.min(0), allc.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return [[float(a - pad * s), float(b + pad * s)] for a, b, s in zip(lo, hi, span)]


def selected_indices(selection: dict | None) -> list[int]:
    """Dataset indices of the points in a `st.plotly_chart` selection event (its `customdata`), in order."""
    pts = ((selection or {}).get("selection") or {}).get("points") or []
    out: list[int] = []
    for p in pts:
        cd = p.get("customdata")
        if isinstance(cd, dict):  # Streamlit sends a point's customdata row as {"0": value}
            cd = cd.get("0", cd.get(0))
        elif isinstance(cd, (list, tuple)) and cd:
            cd = cd[0]
        if isinstance(cd, numbers.Real) and not isinstance(cd, bool) and math.isfinite(float(cd)):
            if int(cd) not in out:
                out.append(int(cd))
    return out


@dataclass
class TestSet:
    """The images a projection is made of: a (stratified) sample of a dataset split."""

    images: torch.Tensor         # uint8 (N, C, H, W) as stored (for thumbnails)
    inputs: torch.Tensor         # uint8 (N, C, S, S): resized to the model's input as training does
    labels: np.ndarray           # (N,) int64
    indices: np.ndarray          # (N,) positions in the split
    classes: list[str]
    spec: str
    total: int                   # images in the split


def test_set(spec: str, input_size: int, limit: int = MAX_POINTS, seed: int = 0, split: str = "test") -> TestSet:
    """`limit` images of `spec`'s split (all if fewer), stratified; DatasetError (a ValueError) if it can't load."""
    from .. import data
    from ..train.device_data import resize_uint8

    ds = data.load_dataset(spec, split)
    idx = sample_indices(ds.labels, int(limit), seed)
    t = torch.from_numpy(idx)
    images = ds.images.index_select(0, t)
    inputs = images
    if tuple(images.shape[-2:]) != (int(input_size), int(input_size)):
        check_budget(f"{len(idx):,} resized images", len(idx) * images.shape[1] * input_size ** 2 * 5.0)
        inputs = resize_uint8(images, (int(input_size), int(input_size)))
    return TestSet(images, inputs, ds.labels.index_select(0, t).numpy().astype(np.int64), idx,
                   [str(c) for c in ds.classes], spec, int(len(ds.labels)))
