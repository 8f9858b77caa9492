"""Home: what cnnviz is, a link to every page, and what it runs on."""

import streamlit as st

from ui.nav import PAGES

st.title("cnnviz")
st.markdown(
    "A visual playground for convolutional networks. Pick an image in the sidebar (or upload "
    "your own) and see exactly what a convolution, an upsample, a pooling layer and a BatchNorm "
    "do to it, with the real numbers behind each picture; build an augmentation pipeline and "
    "watch it; compare the classic architectures layer by layer; train LeNet5 or a ResNet and "
    "look inside the model you just trained."
)

section = None
cols = st.columns(3)
for i, p in enumerate(x for x in PAGES if x.section):
    with cols[i % 3].container(border=True):
        st.page_link(p.path, label=f"**{p.title}**", icon=p.icon)
        st.caption(f"{p.section} · {p.blurb}")

st.subheader("Running on")
slot = st.empty()
slot.info("Loading PyTorch to detect the device…", icon=":material/hourglass_top:")

from cnnviz import device  # noqa: E402  (torch is imported only after the page has painted)

slot.success(device.describe(), icon=":material/memory:")
st.caption("Devices available: " + ", ".join(device.available_devices())
           + ". Training picks CUDA, then MPS, then CPU.")
versions = device.versions()
st.caption(" · ".join(f"{k} {v}" for k, v in versions.items()))
