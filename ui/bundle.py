"""The "Download bundle (.zip)" control shared by the Runs and Feature maps pages (imports torch: pages only).

One click makes the bundle (ONNX export, the onnxruntime-vs-PyTorch check, the other files) and
keeps the zip in the session for the weights it was made from; the download button then hands it
over. A refusal (a failed check, an operator ONNX can't express) is one line on the page.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from cnnviz.train import bundle
from ui.layout import error_line


def bundle_download(prefix: str, ident: str, stem: str, make_source: Callable[[], bundle.BundleSource]) -> None:
    """A 'Make bundle' button, then 'Download bundle (.zip)' for the weights identified by `ident`.

    The zip is kept in st.session_state[f"{prefix}_bundle"] ({"ident", "name", "data", "result"}).
    """
    state_key = f"{prefix}_bundle"
    held = st.session_state.get(state_key)
    if held is not None and held.get("ident") != ident:
        held = None
    if held is None:
        slot = st.empty()
        if slot.button("Make bundle", key=f"{prefix}_bundle_make", icon=":material/package_2:",
                       help="ONNX model, weights, labels, preprocessing, a predict.py that needs only onnxruntime, "
                            "numpy and pillow, and a README; checked against PyTorch before it is offered."):
            try:
                with st.spinner("Exporting to ONNX and checking it against PyTorch…"):
                    data, result = bundle.bundle_zip(make_source(), folder_name=stem)
            except (ValueError, OSError, RuntimeError) as exc:
                error_line("No bundle", exc)
                return
            held = {"ident": ident, "name": f"{stem}.zip", "data": data, "result": result.to_dict()}
            st.session_state[state_key] = held
            slot.empty()
    if held is None:
        return
    res = held["result"]
    st.download_button("Download bundle (.zip)", data=held["data"], file_name=held["name"], mime="application/zip",
                       key=f"{prefix}_bundle_dl", icon=":material/download:", on_click="ignore",
                       help=f"{held['name']}: model.onnx, model.safetensors, labels.json, preprocess.json, "
                            "predict.py, README.md")
    st.caption(f"{len(held['data']) / 2**20:.1f} MB, ONNX opset {res['opset']}; checked with onnxruntime on "
               f"{res['checked_images']} images: largest logit difference {res['max_logit_diff']:.2g}."
               + "".join(f" Note: {n}." for n in res.get("notes", [])))
