"""Real-browser test: one visitor sends every hostile file while another keeps using the app.

A server of its own (`streamlit run app.py`, CNNVIZ_SERVER_BUDGET_MB=512, data roots and designs in
a temporary folder). Session A uploads each hostile checkpoint on the Feature maps page, the 30 KB
zip of flat 40-megapixel JPEGs on the Datasets page, and types `/` as a dataset folder; right after
each one is sent, session B opens a page and must get it (painted, no exception). Each refusal is
one line on A's page. The server's peak resident set (VmHWM, reset once both sessions have warmed
up) stays under the budget above its idle size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save

from .server import exceptions, goto_via_sidebar, main_text, running_app, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

BUDGET_MB = 512
SECRET = "TOKEN-5f1c0ffee"


def _st(meta: dict, tensors: dict | None = None) -> bytes:
    return save(tensors or {"w": torch.zeros(1)}, metadata={"format": "cnnviz-1", "meta": json.dumps(meta)})


def _server_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(argv) and port.encode() in argv and b"--server.port" in argv:
                return int(d.name)
    raise LookupError(f"no streamlit process on port {port}")


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _choose(page, key: str, option: str) -> None:
    page.locator(f".st-key-{key} button[aria-label='Open']").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def _alerts(page) -> str:
    return "\n".join(page.locator('[data-testid="stMain"] [data-testid="stAlert"]').all_inner_texts())


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-server")
    (base / "outside").mkdir()
    (base / "outside" / "secret.json").write_text(json.dumps({"name": SECRET, "layers": [{"type": SECRET}]}))
    env = {"CNNVIZ_RUNS": str(base / "runs"), "CNNVIZ_DATA": str(base / "data"), "CNNVIZ_CACHE": str(base / "cache"),
           "CNNVIZ_DESIGNS": str(base / "designs"), "CNNVIZ_SERVER_BUDGET_MB": str(BUDGET_MB)}
    env.pop("CNNVIZ_DATA_ROOTS", None)
    os.environ.pop("CNNVIZ_DATA_ROOTS", None)
    with running_app(env, timeout=120) as url:
        yield url, base


def test_a_second_session_keeps_working_while_the_first_sends_hostile_files(browser, hostile_server, artifacts):
    import io
    import zipfile

    url, base = hostile_server
    pid = _server_pid(url)
    ctx_a = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx_b = browser.new_context(viewport={"width": 1400, "height": 1000})
    for ctx in (ctx_a, ctx_b):
        ctx.set_default_timeout(60_000)
    a, b = ctx_a.new_page(), ctx_b.new_page()
    try:
        for p in (a, b):  # both sessions warm: what the pages import is part of the idle size
            p.goto(url)
            wait_idle(p)
            goto_via_sidebar(p, url, "feature-maps")
            goto_via_sidebar(p, url, "datasets")
        goto_via_sidebar(a, url, "feature-maps")
        a.locator('[data-testid="stMain"]').get_by_text("Upload a checkpoint", exact=True).click()
        wait_idle(a)
        idle = _vm(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the server's peak starts again from here

        b_pages = ["convolution", "home", "batchnorm", "upsample-pooling"]
        seen: dict[str, str] = {}

        def b_answers(i: int) -> None:
            goto_via_sidebar(b, url, b_pages[i % len(b_pages)])
            assert main_text(b).strip() and not exceptions(b), f"session B after attack {i}: {exceptions(b)}"

        ckpts = {
            "classes": (_st({"model": "lenet5", "num_classes": 100_000_000, "in_channels": 3}),
                        "100,000,000 classes; at most 100,000"),
            "channels": (_st({"model": "lenet5", "num_classes": 10, "in_channels": 1_000_000}),
                         "1,000,000 input channels"),
            "zero_size": (save({"fc_unit.2.weight": torch.zeros(100_000_000, 0)}), "zero-size tensor"),
            "input_size": (_st({"model": "lenet5", "num_classes": 10, "input_size": 60_000}),
                           "60,000 pixels of input size"),
            "design_outside": (_st({"model": f"design:{base / 'outside' / 'secret.json'}"}),
                               "is not a file in the designs folder"),
        }
        box = a.locator('.st-key-fm_upload [data-testid="stFileUploaderDropzoneInput"]')
        for i, (name, (blob, words)) in enumerate(ckpts.items()):
            box.set_input_files({"name": f"{name}.safetensors", "mimeType": "application/octet-stream",
                                 "buffer": blob})
            b_answers(i)  # while A's upload is being read
            wait_idle(a)
            text = _alerts(a)
            assert words in text and "Couldn't use these weights" in text, (name, text)
            assert SECRET not in main_text(a) and not exceptions(a), name
            seen[name] = next(ln for ln in text.splitlines() if words in ln)
        a.screenshot(path=str(artifacts / "browser-hostile-checkpoint.png"))

        # the Datasets page: the zip bomb of flat 40-megapixel JPEGs, then `/` as a folder
        goto_via_sidebar(a, url, "datasets")
        flat = io.BytesIO()
        Image.new("RGB", (7000, 5700), (200, 30, 30)).save(flat, "JPEG", quality=75)
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for c in "ab":
                for k in range(12):
                    zf.writestr(f"{c}/{k}.jpg", flat.getvalue())
        assert len(zbuf.getvalue()) < 30_000
        _choose(a, "ds_source", "Upload a .zip")
        a.locator('.st-key-ds_upload [data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            {"name": "flat.zip", "mimeType": "application/zip", "buffer": zbuf.getvalue()})
        b_answers(len(seen))
        wait_idle(a)
        text = _alerts(a)
        assert "a decompression bomb, not a dataset" in text and not exceptions(a), text
        seen["zip_flat_40mp"] = text.strip().splitlines()[-1]
        _choose(a, "ds_source", "A folder or .zip on disk")
        path = a.locator(".st-key-ds_path input")
        path.fill("/")
        path.press("Enter")
        b_answers(len(seen))
        wait_idle(a)
        text = _alerts(a)
        assert "is not inside the folders this server reads" in text and not exceptions(a), text
        seen["folder_root"] = text.strip().splitlines()[-1]
        a.screenshot(path=str(artifacts / "browser-hostile-datasets.png"))

        peak = _vm(pid, "VmHWM")
        rise = peak - idle
        print(f"\nserver idle {idle / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB, rise {rise / 2**20:.0f} MB "
              f"(budget {BUDGET_MB} MB)")
        for k, v in seen.items():
            print(f"  {k}: {v}")
        assert rise < BUDGET_MB * 2**20, f"server rose {rise / 2**20:.0f} MB above its idle size"
        b_answers(0)
    finally:
        ctx_a.close()
        ctx_b.close()
