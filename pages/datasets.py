"""Datasets: pick one, see samples per class, class counts, size and channels, and the per-channel mean/std."""

from __future__ import annotations

from collections import OrderedDict

import streamlit as st

from ui.layout import page_header, user_error
from ui.pictures import picture

page_header(
    "Datasets",
    "Where the training images come from. The built-in **shapes** and **digits** sets work offline with "
    "nothing downloaded; **CIFAR-10**, **MNIST** and **Fashion-MNIST** are fetched only when you press "
    "Download; your own images can be a **folder** (`train/<class>/…` and `test/<class>/…`, or just "
    "`<class>/…`) or the same layout in a **zip**. Every dataset is decoded once and cached, and the "
    "per-channel mean/std computed here are the numbers a `Normalize` step should use.",
)

from cnnviz import data as D  # noqa: E402  (after the header has painted)
from cnnviz import limits  # noqa: E402
from cnnviz.data import overview as S  # noqa: E402
from cnnviz.data import downloads as TV  # noqa: E402

SOURCES = {
    "shapes": "Built-in shapes (offline)",
    "digits": "Built-in digits (MNIST sample, offline)",
    "cifar10": "CIFAR-10",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "path": "A folder or .zip on disk",
    "upload": "Upload a .zip",
}
TORCHVISION = {"cifar10": "CIFAR-10", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
MEMORY_ENTRIES = 6


@st.cache_resource(show_spinner=False)
def _keep_upload(up) -> None:
    """With sign-in: keep an uploaded zip in the user's own uploads folder (a quota), to train on it."""
    from cnnviz.uploads import UploadError, quota_bytes, save_upload, used_bytes
    from ui.auth import current_user, sign_in_configured

    user = current_user()
    if not sign_in_configured() or user is None or user.id == "local":
        return
    if st.button("Keep it to train on", key="ds_keep_upload", icon=":material/save:",
                 help="Saves the zip in your own uploads folder; the Train page then offers it as a dataset."):
        try:
            path = save_upload(user.id, up.name, up.getvalue())
        except (UploadError, OSError) as exc:
            user_error(str(exc).splitlines()[0])
            return
        st.success(f"Kept as {path.name}: pick it on the Train page.", icon=":material/check:")
    st.caption(f"Your kept uploads: {used_bytes(user.id) / 2**20:,.1f} of {quota_bytes() / 2**20:,.0f} MB "
               "(CNNVIZ_UPLOAD_QUOTA_MB).")


def _memory() -> OrderedDict:
    """Loaded datasets kept across reruns and sessions: (spec, split, source key) -> ImageDataset."""
    return OrderedDict()


def _load(spec: str, split: str, *, download: bool = False, refresh: bool = False,
          upload=None) -> D.ImageDataset:
    """From memory when the source is unchanged, else load_dataset with a progress bar."""
    mem = _memory()
    key = (spec, split, upload.file_id if upload is not None else D.source_key(spec))
    if key in mem and not (download or refresh):
        mem.move_to_end(key)
        return mem[key]
    bar = st.progress(0.0, text=f"Loading {spec} ({split} split)…")

    def progress(fraction: float, message: str) -> None:
        bar.progress(fraction, text=message)

    try:
        if upload is not None:
            ds = D.load_dataset_from_zip_bytes(upload.getvalue(), split, name=upload.name, progress=progress)
        else:
            ds = D.load_dataset(spec, split, download=download, refresh=refresh, progress=progress)
    finally:
        bar.empty()
    if upload is None and key[2] is None:  # just downloaded: key it by what is there now
        key = (spec, split, D.source_key(spec))
    mem[key] = ds
    while len(mem) > 1 and (len(mem) > MEMORY_ENTRIES or  # at most the memory budget, oldest out first
                            sum(d.images.nbytes for d in mem.values()) > limits.server_budget_bytes()):
        mem.popitem(last=False)
    return ds


# ---- what to load ----------------------------------------------------------------------------
c_src, c_arg, c_split = st.columns([1.1, 2.2, 0.8], vertical_alignment="bottom")
source = c_src.selectbox("Dataset", list(SOURCES), format_func=SOURCES.get, key="ds_source")
split = c_split.radio("Split", list(D.SPLITS), horizontal=True, key="ds_split")

ds: D.ImageDataset | None = None
refresh = False
try:
    if source == "shapes":
        c_arg.caption("10 classes of coloured figures on textured backgrounds, 32×32 RGB, 20,000 train / "
                      "4,000 test, drawn from a fixed seed (generated once, then read from the cache).")
        ds = _load("shapes", split)
    elif source == "digits":
        c_arg.caption("Handwritten digits shipped with cnnviz (assets/digits/, 0.8 MB), no download: a seeded, "
                      "stratified split of MNIST's digits, what the tutorial's MNIST pipeline was written for.")
        ds = _load("digits", split)
    elif source in TORCHVISION:
        where = TV.expected_location(source)
        clicked = c_arg.button(f"Download {TORCHVISION[source]}", key="ds_download", icon=":material/download:",
                               help=f"Fetches the files from the internet into {where.parent}.")
        if clicked:
            ds = _load(source, split, download=True)
        elif TV.is_present(source):
            ds = _load(source, split)
        else:
            st.info(f"{TORCHVISION[source]} is not on this machine yet. Press **Download** (needs the network), "
                    f"or put {TV.expected_files(source)} in `{where}`.", icon=":material/cloud_download:")
    elif source == "path":
        path = c_arg.text_input("Path", key="ds_path", placeholder="../shared/data/cifar10-jpeg  or  /data/pets.zip",
                                help="A folder with train/<class>/* and test/<class>/* (or just <class>/*, "
                                     "split 90/10 with a fixed seed), or a .zip holding the same.").strip()
        if not path:
            st.info("Type the path of a folder or a .zip file with one sub-folder per class.",
                    icon=":material/folder_open:")
        else:
            spec = D.visitor_spec(f"zip:{path}" if path.lower().endswith(".zip") else f"folder:{path}")  # data roots only
            refresh = st.button("Re-read the files (ignore the cache)", key="ds_refresh",
                                help="The cache notices added, removed and renamed files; press this after "
                                     "overwriting files in place.")
            ds = _load(spec, split, refresh=refresh)
    else:
        up = c_arg.file_uploader("Dataset zip", type=["zip"], key="ds_upload",
                                 help="<class>/<image> or train/<class>/<image> and test/<class>/<image> inside. "
                                      "Checked before reading: entry count, sizes, compression ratio, names, links.")
        if up is None:
            st.info("Upload a .zip with one folder per class.", icon=":material/upload_file:")
        else:
            ds = _load(f"zip:{up.name}", split, upload=up)
            _keep_upload(up)
except D.DatasetError as exc:
    user_error(str(exc))
    ds = None

if ds is None:
    st.stop()

# ---- what it is ------------------------------------------------------------------------------
h, w = ds.size
m = st.columns(5)
m[0].metric(f"Images ({split})", f"{len(ds):,}")
m[1].metric("Classes", ds.num_classes)
m[2].metric("Image size", f"{h}×{w}")
m[3].metric("Channels", f"{ds.channels} ({'RGB' if ds.channels == 3 else 'greyscale'})")
m[4].metric("Unreadable files skipped", ds.skipped, help="Files with an image extension that could not be decoded.")
if ds.note:
    st.caption(ds.note)
if ds.channels == 1:
    st.info("1-channel (greyscale) data: nothing is converted to RGB. Models trained on it are built with "
            "`in_channels=1` (the Train page reads the channel count from the dataset), so the first convolution "
            "has 1 input channel instead of 3.", icon=":material/filter_b_and_w:")

left, right = st.columns([1.45, 1.0], gap="large")
with left:
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    a.subheader("Samples per class")
    seed = b.number_input("Sample seed", 0, 10_000, 0, key="ds_seed", help="Another seed, other samples.")
    rows = S.sample_rows(ds, per_class=8, seed=int(seed))
    for row in rows:
        if row.image is None:
            st.caption(f"**{row.label}: {row.name}**, no images in the {split} split")
            continue
        st.image(**picture(row.image), caption=f"{row.label}: {row.name}, {row.count:,} {split} images; "
                                    f"{len(row.indices)} random ones (seed {seed}), shown at "
                                    f"{row.image.height // h}× size")
    if ds.num_classes > len(rows):
        st.caption(f"The first {len(rows)} of {ds.num_classes} classes are shown.")

with right:
    st.subheader("Class counts")
    counts = ds.class_counts()
    st.plotly_chart(S.class_count_figure(ds.classes, counts, split), width="stretch", key="ds_counts")
    lo, hi = min(counts), max(counts)
    st.caption(f"Smallest class {lo:,}, largest {hi:,}" + (" (balanced)." if lo == hi else
                                                           f" (ratio {hi / max(lo, 1):.1f}:1)."))

    st.subheader("Per-channel mean and std")
    names = S.channel_names(ds.channels)
    table = "| channel | mean | std |\n|---|---|---|\n" + "\n".join(
        f"| {n} | {mu:.4f} | {sd:.4f} |" for n, mu, sd in zip(names, ds.mean, ds.std))
    st.markdown(table)
    st.caption("Computed over every pixel of the **train** split (whichever split is shown), in the [0, 1] units "
               "that ToTensor / ToDtype(scale=True) give. Normalize with them so each channel has mean 0 and std 1:")
    st.code(S.normalize_code(ds.mean, ds.std), language="python", wrap_lines=True)
    notes = S.normalize_notes(ds.mean, ds.std)
    if notes:
        lines = []
        for n in notes:
            ref = n.reference
            vals = f"mean {list(ref.mean)}, std {list(ref.std)}"
            verdict = ("matches these data (within 0.005)" if n.matches else
                       f"differs from these data by up to {n.max_mean_diff:.3f} in the mean and "
                       f"{n.max_std_diff:.3f} in the std")
            lines.append(f"- **{ref.label}**: {vals} {verdict}" + (f". {ref.remark[0].upper()}{ref.remark[1:]}."
                                                                 if ref.remark else "."))
        st.markdown("**Hard-coded Normalize values seen in tutorials**, against the computed ones:\n" + "\n".join(lines))
