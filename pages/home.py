"""Home: what cnnviz is, a link to every page, and what it runs on.

Everything above "Running on" is drawn before torch is imported (the import takes seconds
on a cold start), so the page paints at once; device and versions fill in after.
"""

import streamlit as st
from streamlit.errors import StreamlitAPIException

from ui.layout import page_header
from ui.nav import PAGES

page_header(
    "cnnviz",
    "A visual playground for convolutional networks. Pick an image in the sidebar (or upload "
    "your own) and see exactly what a convolution, an upsample, a pooling layer and a BatchNorm "
    "do to it, with the real numbers behind each picture; build an augmentation pipeline and "
    "watch it; compare the classic architectures layer by layer; train LeNet5 or a ResNet and "
    "look inside the model you just trained.",
)

sections: dict[str, list] = {}
for p in PAGES:
    if p.section:
        sections.setdefault(p.section, []).append(p)
for col, (section, pages) in zip(st.columns(len(sections)), sections.items()):
    with col:
        st.markdown(f"#### {section}")
        for p in pages:
            with st.container(border=True):
                try:
                    st.page_link(p.path, label=f"**{p.title}**", icon=p.icon)
                except StreamlitAPIException:  # run on its own (no st.navigation): no link target
                    st.markdown(f"**{p.title}**")
                st.caption(p.blurb)

st.markdown("#### Running on")
slot = st.empty()
slot.info("Loading PyTorch to detect the device…", icon=":material/hourglass_top:")

from cnnviz import device  # noqa: E402  (torch is imported only after the page has painted)

try:
    slot.success(device.describe(), icon=":material/memory:")
    st.caption("Devices available here: " + ", ".join(device.available_devices())
               + ". Training uses CUDA if present, then Apple's MPS, then the CPU.")
    versions = device.versions()
    st.caption("Versions: " + " · ".join(f"{k} {v}" for k, v in versions.items()))
except Exception as exc:  # noqa: BLE001 - a broken driver must not break the home page
    slot.warning(f"Could not query the compute device: {exc}", icon=":material/warning:")
