"""Microscope: what a network learned. Filters over epochs, weight and gradient health, a page per channel."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from ui.layout import error_line, one_line, page_header, user_error

page_header(
    "Microscope",
    "Feature maps show what a layer outputs for *your* image; the Microscope shows what the network "
    "**learned**. **Filters**: a conv layer's kernels, and how they change over a run's saved epochs. "
    "**Weights & gradients**: each layer's weight distribution, norms, update sizes and gradient norms per "
    "epoch, dead ReLUs, and what vanishing gradients look like. **Channel**: for any channel, the test "
    "images that drive it hardest (and least) with where it fires, and the input it likes best, found by "
    "gradient ascent from noise.",
)

import torch  # noqa: E402  (after the header has painted)

from cnnviz import models  # noqa: E402
from cnnviz.images import display  # noqa: E402
from cnnviz.inspect import featurevis, features, layerstats, microscope, msplots, topk, loading  # noqa: E402
from cnnviz.models.checkpoints import CheckpointError  # noqa: E402
from ui.image_state import use_image  # noqa: E402
from ui.pictures import picture  # noqa: E402
from cnnviz.runs import snapshot  # noqa: E402
from ui.weights import RANDOM, RUN, SHIPPED, TORCHVISION, UPLOAD, load_weights, runs_with_checkpoints  # noqa: E402

HANDOFF = "microscope_handoff"      # {name, kind, path, seed, raw, run_id, epoch, layer, channel} from another page
FROM_PAGE = "Opened from another page"
TILE = 112
K = 8


# ---------------------------------------------------------------- cached work
@st.cache_resource(show_spinner=False, max_entries=8)
def _states(key: str, paths: tuple[tuple[int, str], ...]) -> dict[int, dict[str, torch.Tensor]]:
    return microscope.epoch_states({e: Path(p) for e, p in paths})


@st.cache_resource(show_spinner=False, max_entries=3)
def _test_set(spec: str):
    from cnnviz import data

    return data.load_dataset(spec, "test")


def _ranked(key: str, layer: str, spec: str, loaded, images) -> topk.Scores:
    """Peak activations of every channel of `layer` over the test images: cached on disk by the backend
    (per weights, layer and dataset), so only the first look runs the pass (with a progress bar)."""
    bar = st.progress(0.0, text=f"Running {len(images):,} test images through {layer}…")
    try:
        return topk.cached_scores(
            loaded.model, images, layer, dataset_key=spec, mean=loaded.mean, std=loaded.std,
            size=loaded.input_size, in_channels=loaded.in_channels, weights_key=key,
            progress=lambda i, n: bar.progress(i / n, text=f"{i:,} of {n:,} test images through {layer}"))
    finally:
        bar.empty()


@st.cache_data(show_spinner=False)
def _lesson(depth: int) -> dict[str, dict[str, float]]:
    return {"plain (no BatchNorm)": layerstats.gradient_lesson(depth, shortcuts=False),
            "with shortcuts": layerstats.gradient_lesson(depth, shortcuts=True)}


@st.cache_resource(show_spinner=False, max_entries=8)
def _dead(model_key: str, spec: str, _loaded, _images) -> list[layerstats.DeadRelu]:
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(_images), generator=g)[:256]
    x = topk.prepare(_images[idx], _loaded.mean, _loaded.std, _loaded.input_size, _loaded.in_channels)
    return layerstats.dead_relu_fraction(_loaded.model, x)


@st.cache_resource(show_spinner=False, max_entries=64)
def _figure(builder: str, *args):
    """A plotly figure from msplots, built once per distinct data (Streamlit hashes the arguments): a
    rerun that changed nothing does not rebuild it."""
    return getattr(msplots, builder)(*args)


@st.cache_resource(show_spinner=False, max_entries=16)
def _layers(model_key: str, shape: tuple, _model) -> list:
    return features.list_layers(_model, shape)


@st.cache_resource(show_spinner=False, max_entries=64)
def _channel_maps(model_key: str, spec: str, layer: str, ch: int, idx: tuple, _loaded, _images) -> list:
    return topk.channel_maps(_loaded.model, _images, list(idx), layer, ch, mean=_loaded.mean, std=_loaded.std,
                             size=_loaded.input_size, in_channels=_loaded.in_channels)


# ---------------------------------------------------------------- weights
def _apply_handoff(names: list[str]) -> dict | None:
    """A hand-off from Feature maps or Runs selects its model, weights, layer and channel once."""
    h = st.session_state.get(HANDOFF)
    if not h or h.get("name") not in names:
        return None
    if st.session_state.get("ms_handoff_seen") is not h:
        st.session_state["ms_handoff_seen"] = h
        name = h["name"]
        st.session_state["ms_model"] = name
        if h.get("run_id"):
            st.session_state[f"ms_source_{name}"] = RUN
            st.session_state["ms_run"] = h["run_id"]
            if h.get("epoch") is not None:
                st.session_state[f"ms_epoch_{h['run_id']}"] = int(h["epoch"])
        else:
            st.session_state[f"ms_source_{name}"] = FROM_PAGE
        if h.get("layer"):
            st.session_state[f"ms_layer_{name}"] = h["layer"]
            if h.get("channel") is not None:
                st.session_state[f"ms_channel_{name}_{h['layer']}"] = int(h["channel"])
    return h


def pick_weights() -> dict:
    """Model and weights widgets; returns {name, kind, path, seed, raw, run, epochs}."""
    names = models.names() + models.design_names()
    handed = _apply_handoff(names)
    shipped = loading.shipped_checkpoints()
    c1, c2, c3 = st.columns([1.1, 1.3, 1.6], gap="medium")
    name = c1.selectbox("Model", names, index=names.index(next(iter(shipped), "lenet5")), key="ms_model")
    info = models.info(name)
    here = loading.shipped_for(name)
    sources = ([FROM_PAGE] if handed and not handed.get("run_id") and handed.get("name") == name else [])
    sources += [SHIPPED[d] for d in here] + [RUN, UPLOAD, RANDOM]
    if info.torchvision_name:
        sources.append(TORCHVISION)
    if st.session_state.get(f"ms_source_{name}") not in sources:
        st.session_state.pop(f"ms_source_{name}", None)
    kind = c2.radio("Weights", sources, key=f"ms_source_{name}")
    out = {"name": name, "kind": kind, "path": "", "seed": 0, "raw": None, "run": None, "epochs": {}}
    with c3:
        if kind == FROM_PAGE:
            out.update(kind=handed["kind"], path=handed.get("path") or "", seed=int(handed.get("seed") or 0),
                       raw=handed.get("raw"))
            st.info(f"Opened from {handed.get('page', 'another page')}: {handed.get('label') or handed['kind']}",
                    icon=":material/link:")
        elif kind in SHIPPED.values():
            dataset = next(d for d, label in SHIPPED.items() if label == kind)
            out["path"] = str(here[dataset])
            st.caption(f"`{Path(out['path']).name}`, trained by cnnviz (one saved epoch: the scrubber needs a run).")
        elif kind == RANDOM:
            out["seed"] = int(st.number_input("Seed", 0, 10_000, 0, key="ms_seed"))
        elif kind == RUN:
            runs = [r for r in runs_with_checkpoints() if r.config.get("model") == name]
            if not runs:
                st.info(f"No training run of {name} with a checkpoint yet: train one on the Train page.",
                        icon=":material/info:")
            else:
                ids = [r.run_id for r in runs]
                if st.session_state.get("ms_run") not in ids:
                    st.session_state["ms_run"] = ids[0]
                rid = st.selectbox("Run", ids, key="ms_run")
                run = runs[ids.index(rid)]
                out["run"], out["epochs"] = run, dict(run.checkpoints)
                eps = sorted(run.checkpoints)
                if len(eps) > 1:
                    key = f"ms_epoch_{rid}"
                    if st.session_state.get(key) not in eps:
                        st.session_state[key] = eps[-1]
                    ep = st.select_slider("Epoch", eps, key=key, help="Every saved epoch of this run: "
                                          "scrub to watch filters, weights and channels change.")
                    out["path"] = str(run.checkpoints[ep])
                else:
                    out["path"] = str(run.checkpoints[eps[0]] if eps else run.last_checkpoint)
                out["epoch"] = int(ep) if len(eps) > 1 else (eps[0] if eps else None)
        elif kind == UPLOAD:
            up = st.file_uploader("Checkpoint (.safetensors, .pt, .pth)", type=["safetensors", "pt", "pth"],
                                  key="ms_upload", help="Read with safetensors or torch.load(weights_only=True).")
            if up is not None:
                out["raw"], out["path"] = up.getvalue(), up.name
        elif kind == TORCHVISION and not models.pretrained_status(name).cached:
            st.warning(models.pretrained_status(name).how_to, icon=":material/cloud_off:")
    return out


def load(choice: dict):
    """(Loaded, cache key) for the choice, or (None, reason) with the reason shown."""
    kind, name, path, raw = choice["kind"], choice["name"], choice["path"], choice["raw"]
    if kind == TORCHVISION and not models.pretrained_status(name).cached:
        return None, "ImageNet weights not cached"
    if kind not in (RANDOM, TORCHVISION) and not path:
        return None, "no checkpoint chosen yet"
    digest = hashlib.sha1(raw).hexdigest() if raw is not None else ""
    mtime = Path(path).stat().st_mtime if path and raw is None and Path(path).is_file() else 0
    key = f"{kind}|{name}|{choice['seed']}|{path}|{mtime}|{digest}|{models.design.stamp(name)}"
    try:
        with st.spinner(f"Loading {name}…"):
            loaded = load_weights(key, kind, name, choice["seed"], path, raw)
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
        error_line("Couldn't use these weights", exc)
        return None, "the weights could not be loaded"
    for w in loaded.warnings:
        st.warning(w, icon=":material/warning:")
    return loaded, key


def _epoch_of(choice: dict, loaded) -> int:
    e = choice.get("epoch")
    if e is None:
        e = loaded.meta.get("epoch") if isinstance(loaded.meta.get("epoch"), int) else 0
    return int(e)


def _epoch_paths(choice: dict) -> dict[int, str]:
    if choice["epochs"]:
        return {int(e): str(p) for e, p in choice["epochs"].items()}
    if choice["path"] and choice["raw"] is None and Path(choice["path"]).is_file():
        return {int(choice.get("epoch") or 0): choice["path"]}
    return {}


def _states_for(choice: dict, loaded) -> dict[int, dict[str, torch.Tensor]]:
    """{epoch: state dict}: every saved epoch of a run, else the one loaded model."""
    paths = _epoch_paths(choice)
    if len(paths) > 1:
        key = "|".join(f"{p}:{Path(p).stat().st_mtime_ns}" for p in paths.values())
        return _states(key, tuple(sorted(paths.items())))
    return {_epoch_of(choice, loaded): {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}}


# ---------------------------------------------------------------- views
def filters_view(choice: dict, loaded, states: dict) -> None:
    convs = microscope.conv_layers(loaded.model)
    if not convs:
        st.info(f"{loaded.name} has no Conv2d layer.", icon=":material/info:")
        return
    by = {c.name: c for c in convs}
    f1, f2, f3 = st.columns([2, 1, 1])
    layer = f1.selectbox(f"Conv layer ({len(convs)})", list(by), key=f"ms_filters_layer_{loaded.name}",
                         format_func=lambda n: by[n].label)
    max_out = int(f2.number_input("Output channels shown", 1, 512, min(64, by[layer].out_channels),
                                  key=f"ms_filters_out_{layer}"))
    shared = f3.toggle("One scale for all epochs", value=True, key="ms_filters_shared",
                       help="The same colour scale at every saved epoch, so growth shows as stronger colour.",
                       disabled=len(states) < 2)
    key = f"{layer}.weight"
    ep = _epoch_of(choice, loaded) if len(states) > 1 else next(iter(states))
    w = states.get(ep, {}).get(key, loaded.model.get_submodule(layer).weight.detach().cpu())
    scale = microscope.shared_scale([s[key] for s in states.values() if key in s]) if shared else None
    try:
        grid = microscope.filter_grid(w, scale=scale, max_out=max_out)
    except ValueError as exc:
        user_error(str(exc))
        return
    st.image(**picture(grid.image, width=min(grid.image.width, 1400)))
    when = f"epoch {ep} of {len(states)} saved" if len(states) > 1 else "these weights"
    norms = microscope.kernel_norms(w)
    st.caption(f"`{layer}` at {when}: {grid.describe()} Kernel L2 norms {float(norms.min()):.3g}..{float(norms.max()):.3g}"
               f" (mean {float(norms.mean()):.3g})." + (" Scrub the epoch above: with one scale for all epochs, "
                                                       "noise becoming edge and colour detectors shows directly."
                                                       if len(states) > 1 else ""))


def health_view(choice: dict, loaded, states: dict, key: str, spec: str) -> None:
    keys = microscope.layer_weight_keys(loaded.model)
    h1, h2 = st.columns(2, gap="large")
    with h1:
        layer = st.selectbox("Layer", list(keys), key=f"ms_hist_layer_{loaded.name}")
        hist = microscope.weight_histograms({e: s[keys[layer]] for e, s in states.items() if keys[layer] in s})
        st.plotly_chart(_figure("histogram_heatmap", hist, layer), width="stretch", key="ms_hist")
        st.caption(f"Distribution of `{layer}`'s weights: {hist.describe()}. {microscope.HEALTH['hist']}")
    run = choice.get("run")
    nums, series = layerstats.layer_series(snapshot(run.run_dir).epochs if run is not None else [])
    with h2:
        if nums and any(v is not None for vals in series["grad_norm"].values() for v in vals):
            st.plotly_chart(_figure("layer_lines", nums, series["grad_norm"], "Gradient norm per layer (last step of "
                            "each epoch)", "‖∇W‖"), width="stretch", key="ms_grad")
            st.caption(f"Logged by the trainer at the end of each of {len(nums)} epochs, one line per layer. "
                       f"{microscope.HEALTH['grad']}")
        else:
            st.info("Gradient norms are logged by the trainer at each epoch end: train a run (Train page) and "
                    "choose it above to see them. The same picture on a deep net is below.", icon=":material/info:")
    eps, norms, ratios = microscope.checkpoint_norms(states, keys)
    r1, r2 = st.columns(2, gap="large")
    logged_ratio = nums and any(v is not None for vals in series["update_ratio"].values() for v in vals)
    if logged_ratio or len(eps) > 1:
        r1.plotly_chart(_figure("layer_lines", nums if logged_ratio else eps,
                                series["update_ratio"] if logged_ratio else ratios,
                                "Update/weight ratio per layer", "‖ΔW‖ / ‖W‖"), width="stretch",
                        key="ms_ratio")
        r1.caption(("Logged each epoch: " if logged_ratio else f"Between consecutive saved checkpoints ({len(eps)}): ")
                   + microscope.HEALTH["ratio"])
    else:
        r1.info("Update/weight ratios need two saved epochs (a training run): " + microscope.HEALTH["ratio"],
                icon=":material/info:")
    r2.plotly_chart(_figure("layer_lines", eps, norms, "Weight norm per layer", "‖W‖"), width="stretch",
                    key="ms_wnorm")
    r2.caption(f"L2 norm of each layer's weight at each of the {len(eps)} saved epoch(s).")
    d1, d2 = st.columns(2, gap="large")
    with d1:
        ds = _dataset_or_error(spec)
        if ds is not None:
            dead = _dead(key, spec, loaded, ds.images)
            if dead:
                st.dataframe([{"ReLU (called by)": d.layer, "units": d.units, "dead units %": round(100 * d.fraction, 2),
                               "dead channels": f"{d.dead_channels} of {d.channels}"} for d in dead],
                             hide_index=True, key="ms_dead")
                st.caption(f"Dead ReLU units on a fixed probe batch of 256 `{spec}` test images (seed 0): a unit "
                           f"is dead when it outputs 0 for all of them. {microscope.HEALTH['dead']}")
            else:
                st.info(f"{loaded.name} calls no ReLU.", icon=":material/info:")
    with d2:
        depth = int(st.select_slider("Depth of the lesson's nets", [8, 14, 20, 32], value=20, key="ms_lesson_depth"))
        lesson = _lesson(depth)
        st.plotly_chart(_figure("depth_bars", lesson, f"Vanishing gradients: {depth} conv layers, fresh weights",
                                "‖∇W‖ (log)"), width="stretch", key="ms_lesson")
        plain, res = (list(v.values()) for v in lesson.values())
        st.caption(f"Gradient norm of each layer after one backward pass, PyTorch's default init, no BatchNorm. "
                   f"Plain: first conv {plain[0]:.1e} vs last {plain[-2]:.1e} ({plain[-2] / max(plain[0], 1e-30):.0e}x "
                   f"smaller at the input: 梯度离散, the early layers barely learn). With shortcuts (x + relu(conv x)) "
                   f"the gradient reaches the first layer intact: {res[0]:.1e} vs {res[-2]:.1e}. That is why "
                   "ResNets train at depth, and BatchNorm helps the same way.")


def _dataset_spec(loaded) -> str:
    options = []
    meta_ds = str(loaded.meta.get("dataset") or "")
    kind, sep, where = meta_ds.partition(":")
    if meta_ds and meta_ds != "ImageNet-1k" and not (sep and kind in ("folder", "zip") and not Path(where).exists()):
        options.append(meta_ds)  # (a folder that is not on this machine is left out)
    options += [d for d in ("shapes", "digits") if d not in options]
    if st.session_state.get("ms_dataset") not in options:
        st.session_state["ms_dataset"] = options[0]
    return st.selectbox("Test images from", options, key="ms_dataset",
                        help="The dataset's test split: its first option is the one the weights were trained on.")


def _dataset_or_error(spec: str):
    try:
        with st.spinner(f"Loading the {spec} test split…"):
            return _test_set(spec)
    except (ValueError, FileNotFoundError, OSError) as exc:
        error_line(f"Can't load the {spec} test split", exc)
        return None


def _thumb(ds, i: int, amap: torch.Tensor | None) -> "display.Image.Image":
    im = display.tensor_to_pil(ds.images[i].float() / 255.0).convert("RGB").resize((TILE, TILE), 0)
    if amap is None:
        return im
    return display.overlay(im, display.heatmap(amap), 0.45)


def _gallery(ds, loaded, key: str, spec: str, layer: str, ch: int, items: list[tuple[int, float]]) -> None:
    maps = _channel_maps(key, spec, layer, ch, tuple(i for i, _ in items), loaded, ds.images)
    cols = st.columns(len(items))
    for col, (i, s), m in zip(cols, items, maps):
        col.image(**picture(_thumb(ds, i, m if m.numel() > 1 else None), width=TILE),
                  caption=f"#{i} {ds.classes[int(ds.labels[i])]}: {s:.3g}")


def channel_view(choice: dict, loaded, key: str, spec: str) -> None:
    shape = (loaded.in_channels, loaded.input_size, loaded.input_size)
    layers = [li for li in _layers(key, shape, loaded.model)
              if len(li.shape) in (2, 4) and li.type not in ("Sequential", "ModuleList")]
    by = {li.name: li for li in layers}
    names = list(by)
    lkey = f"ms_layer_{loaded.name}"
    if st.session_state.get(lkey) not in names:
        st.session_state[lkey] = next((li.name for li in layers if li.type == "Conv2d"), names[0])
    c1, c2 = st.columns([2, 1])
    layer = c1.selectbox("Layer", names, key=lkey, format_func=lambda n: f"{n} · {by[n].type} · "
                         + " x ".join(map(str, by[n].shape[1:])))
    n_ch = int(by[layer].shape[1])
    ckey = f"ms_channel_{loaded.name}_{layer}"
    if not 0 <= int(st.session_state.get(ckey, 0)) < n_ch:
        st.session_state[ckey] = 0
    ch = int(c2.number_input(f"Channel (0-{n_ch - 1})", 0, n_ch - 1, key=ckey))
    where = f"epoch {choice['epoch']}" if choice.get("epoch") is not None else loaded.source
    st.markdown(f"#### `{layer}` channel {ch} · {loaded.name} · {where}")
    b1, b2, _ = st.columns([1, 1, 2])
    if b1.button("Back to Feature maps", key="ms_back_fm", icon=":material/layers:",
                 help="This layer and channel on the sidebar image, with these weights."):
        _to_feature_maps(choice, loaded, layer, ch)
    if choice.get("run") is not None and b2.button("Back to the run", key="ms_back_runs", icon=":material/monitoring:"):
        st.session_state["runs_one"] = choice["run"].run_id
        if len(by[layer].shape) == 4:
            st.session_state["runs_layer"] = layer
        try:
            st.switch_page("pages/runs.py")
        except StreamlitAPIException:
            st.success("The Runs page will show this run: open it from the menu.")
    st.subheader("Test images that drive it", divider=False)
    ds = _dataset_or_error(spec)
    scores = None
    if ds is not None:
        auto = loaded.input_size <= 64 or st.session_state.get(f"ms_go_{key}_{layer}_{spec}")
        if not auto and st.button(f"Rank the {len(ds):,} test images", key="ms_rank"):
            st.session_state[f"ms_go_{key}_{layer}_{spec}"] = auto = True
        if auto:
            try:
                scores = _ranked(key, layer, spec, loaded, ds.images)
            except ValueError as exc:
                user_error(one_line(exc))
    if scores is not None:
        top, bottom = scores.top(ch, K), scores.bottom(ch, K)
        st.markdown("**Most**")
        _gallery(ds, loaded, key, spec, layer, ch, top)
        st.markdown("**Least**")
        _gallery(ds, loaded, key, spec, layer, ch, bottom)
        how = "read from the cache" if scores.cached else f"computed in {scores.seconds:.1f} s, batches of {scores.batch}"
        st.caption(f"The {K} of {scores.values.shape[0]:,} `{spec}` test images with the highest and the lowest "
                   f"peak activation of channel {ch} (#index class: peak value), each with the channel's map over "
                   f"it (viridis, own range). Scores {how}, for all {scores.channels} channels at once.")
        o1, o2 = st.columns([2, 1])
        pick = o1.selectbox("Open one in Feature maps", [i for i, _ in top + bottom], key="ms_open_pick",
                            format_func=lambda i: f"#{i} ({ds.classes[int(ds.labels[i])]})")
        if o2.button("Open this image in Feature maps", key="ms_open_image", icon=":material/layers:"):
            use_image(display.tensor_to_pil(ds.images[pick].float() / 255.0), f"{spec} test #{pick}")
            _to_feature_maps(choice, loaded, layer, ch)
    featurevis_view(loaded, key, layer, ch)


def _settings(prefix: str) -> featurevis.Settings:
    with st.expander("Settings (steps, seed, regularisers)", icon=":material/tune:"):
        a, b, c, d = st.columns(4)
        steps = int(a.number_input("Steps", 16, 1024, 256, 16, key=f"{prefix}_steps"))
        seed = int(b.number_input("Seed", 0, 10_000, 0, key=f"{prefix}_seed"))
        param = c.radio("Image", ["fourier", "pixel"], key=f"{prefix}_param", help="fourier: decorrelated colour "
                        "and 1/f spectrum (the default); pixel: raw pixels, for comparison.")
        tv = d.slider("Total variation", 0.0, 0.5, 0.05, 0.01, key=f"{prefix}_tv")
        e, f, g = st.columns(3)
        jitter = int(e.slider("Jitter (px)", 0, 8, 2, key=f"{prefix}_jitter"))
        scale = f.slider("Scale ±", 0.0, 0.3, 0.05, 0.01, key=f"{prefix}_scale")
        rotate = g.slider("Rotation ± (°)", 0.0, 30.0, 5.0, 1.0, key=f"{prefix}_rotate")
    return featurevis.Settings(steps=steps, seed=seed, param=param, tv=tv, jitter=jitter, scale=scale, rotate=rotate)


def _run_vis(loaded, target: tuple, s: featurevis.Settings, label: str) -> featurevis.Visualisation:
    bar = st.progress(0.0, text=f"Gradient ascent on {label}…")
    try:
        return featurevis.visualise(
            loaded.model, target, input_size=loaded.input_size, in_channels=loaded.in_channels, mean=loaded.mean,
            std=loaded.std, settings=s, num_classes=len(loaded.classes),
            progress=lambda i, n, v: bar.progress(i / n, text=f"step {i} of {n}: objective {v:.3g}"))
    finally:
        bar.empty()


def _show_vis(v: featurevis.Visualisation, col) -> None:
    col.image(**picture(display.upscale_nearest(v.image, 224), width=224))
    gain = f"{v.gain:.1f}x" if v.start > 1e-8 else f"+{v.gain:.3g}"
    col.caption(f"Maximises the {v.target}: {v.start:.3g} on the starting noise → {v.final:.3g} ({gain}), "
                f"{v.settings.steps} steps of Adam (lr {v.settings.lr}), {v.settings.param} image, jitter "
                f"{v.settings.jitter} px, scale ±{v.settings.scale:g}, rotation ±{v.settings.rotate:g}°, TV "
                f"{v.settings.tv:g}, seed {v.settings.seed}; {v.seconds:.1f} s. Shown {v.image.width}x{v.image.height} "
                "enlarged.")


def featurevis_view(loaded, key: str, layer: str, ch: int) -> None:
    st.subheader("What it likes best", divider=False)
    s = _settings("ms_fv")
    v1, v2 = st.columns(2, gap="large")
    store = st.session_state.setdefault("ms_vis", {})
    _vis_block(v1, loaded, store, f"{key}|{layer}|{ch}|{s}", s, ("channel", layer, ch), f"channel {ch}",
               f"Visualise channel {ch} of {layer}", "ms_fv_go",
               "Gradient ascent on the input from seeded noise (about a second for LeNet5 on a CPU).")
    cls = v2.selectbox("Class", list(range(len(loaded.classes))), key=f"ms_fv_class_{loaded.name}",
                       format_func=lambda i: loaded.classes[i])
    _vis_block(v2, loaded, store, f"{key}|class|{cls}|{s}", s, ("class", int(cls)), loaded.classes[cls],
               f"Visualise class {loaded.classes[cls]}", "ms_cv_go",
               "The same on a class logit: what the network thinks the class looks like.")


def _vis_block(col, loaded, store: dict, tkey: str, s, target: tuple, name: str, label: str, bkey: str,
               hint: str) -> None:
    """One feature-visualisation button and its picture (kept in `store` under `tkey`), or a hint."""
    if col.button(label, key=bkey, icon=":material/auto_awesome:"):
        try:
            store[tkey] = _run_vis(loaded, target, s, name)
        except ValueError as exc:
            user_error(one_line(exc))
    if tkey in store:
        _show_vis(store[tkey], col)
    else:
        col.caption(hint)


def _to_feature_maps(choice: dict, loaded, layer: str, ch: int) -> None:
    """Hand these weights (when they are a file), layer and channel to the Feature maps page."""
    path = choice["path"]
    if path and choice["raw"] is None and Path(path).is_file():
        st.session_state["feature_maps_checkpoint"] = str(path)
    st.session_state[f"fm_layer_{loaded.name}"] = layer
    st.session_state[f"fm_channel_{layer}"] = ch
    try:
        st.switch_page("pages/feature_maps.py")
    except StreamlitAPIException:  # the page run on its own (no navigation)
        st.success("Feature maps will open on this image and these weights: open it from the menu.")


# ---------------------------------------------------------------- the page
choice = pick_weights()
loaded, key = load(choice)
if loaded is None:
    st.info(f"Nothing to look at yet: {key}.", icon=":material/info:")
    st.stop()
i1, i2 = st.columns([3, 1])
i1.caption(f"**{loaded.name}** with {loaded.source}; input {loaded.in_channels}x{loaded.input_size}x"
           f"{loaded.input_size}.")
with i2:
    spec = _dataset_spec(loaded)
states = _states_for(choice, loaded)
tab_f, tab_h, tab_c = st.tabs(["Filters", "Weights & gradients", "Channel"])
with tab_f:
    filters_view(choice, loaded, states)
with tab_h:
    health_view(choice, loaded, states, key, spec)
with tab_c:
    channel_view(choice, loaded, key, spec)
