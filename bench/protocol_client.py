"""A Streamlit session without a browser: speaks the app's websocket protocol, as a load generator does.

Each `ProtocolSession` connects to `/_stcore/stream` as the browser's frontend does (subprotocol
"streamlit"), asks for a script run (a `BackMsg` with a `ClientState`: the page's script hash, no
widget values, so every widget takes its default), reads the `ForwardMsg`s until the run has
finished, then fetches every `/media/...` file the run's elements point at (the pictures a browser
would load). It draws nothing, so the time it measures is the server's: the rerun, the serialising,
the websocket and the media files, without a renderer per session on the same cores.

What it does not do, which a browser does: run components' JavaScript (a component that sends a
value back, such as the sidebar's drawing canvas when it first mounts, triggers one more rerun in a
browser) and fetch the app's static JavaScript and fonts (a browser caches them after its first
page). Used by `bench/load.py --clients protocol`; written by hand because no kept library speaks
Streamlit's protocol (Locust and k6 speak HTTP and raw websockets; the messages are Streamlit's own
protobufs, `streamlit.proto`).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import urllib.request

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

_MEDIA = re.compile(rb"/media/[0-9A-Za-z_-]+\.[0-9A-Za-z]+")
_DONE = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR)


class ProtocolSession:
    """One visitor: `await open()`, then `await visit(url_path)` per page; `pages` maps url paths to
    script hashes (from the app's navigation message), `exceptions` counts exception elements seen."""

    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")
        self.pages: dict[str, str] = {}
        self.exceptions = 0
        self.media_bytes = 0
        self._ws = None
        self._jar = http.cookiejar.CookieJar()
        self._http = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self._jar))

    async def open(self) -> None:
        """Load the page's HTML first, as a browser does: behind `cnnviz serve` that answer carries the
        proxy's affinity cookie, which the websocket and the media requests then send."""
        await asyncio.to_thread(self._fetch, "/")
        cookie = "; ".join(f"{c.name}={c.value}" for c in self._jar)
        ws_url = "ws" + self.base[len("http"):] + "/_stcore/stream"
        self._ws = await websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=120,
                                            ping_interval=None,
                                            additional_headers={"Cookie": cookie} if cookie else None)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def visit(self, url_path: str = "") -> None:
        """Run the page at `url_path` ('' = the default page) to its end and load its pictures."""
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = ""
        state.page_name = url_path
        state.page_script_hash = self.pages.get(url_path, "")
        state.context_info.timezone = "UTC"
        state.context_info.locale = "en-US"
        state.context_info.url = f"{self.base}/{url_path}"
        await self._ws.send(msg.SerializeToString())
        media: set[bytes] = set()
        while True:
            raw = await self._ws.recv()
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "navigation":
                self.pages = {p.url_pathname: p.page_script_hash for p in fwd.navigation.app_pages}
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                if fwd.delta.new_element.WhichOneof("type") == "exception":
                    self.exceptions += 1
                media.update(_MEDIA.findall(raw))
            elif kind == "script_finished" and fwd.script_finished in _DONE:
                break
        sizes = await asyncio.gather(*(asyncio.to_thread(self._fetch, m.decode()) for m in media))
        self.media_bytes += sum(sizes)

    def _fetch(self, path: str) -> int:
        """GET `path` (in a worker thread) with this session's cookies; the bytes' count."""
        with self._http.open(self.base + path, timeout=120) as r:
            return len(r.read())
