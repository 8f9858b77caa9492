"""cnnviz: entry point. `streamlit run app.py`

Builds the navigation over pages/ and draws the shared sidebar (the image picker).
Nothing here imports torch, so the first page paints at once.

The file has two parts. Streamlit runs it as the app script, as `__main__`, on every rerun of
every session: that is `main()`. And `streamlit run app.py`, finding `app = st.App(...)` below,
first imports it once as the module `app` and serves that (the same server as for a plain
script); the st.App's lifespan runs before the first session, which no script code can do: it
keeps Streamlit's old pages/-folder mode off so that a fresh server's first request for a
bookmark such as /train opens that page without a "Page not found" dialog (ui/nav.py).
"""

import os

# Before torch is imported (by the first page): the server's OpenMP threads sleep when idle instead
# of spinning. On a machine whose cores training runs keep busy, spinning threads of two processes
# fight over the cores: the Attribution page's sanity check on ResNet-small took 92 s beside two busy
# torch processes with the default, 3.0 s with PASSIVE (2.0 vs 2.5 s on an idle machine; README).
# Runs started from here do not inherit it (cnnviz.runs.executor drops it): a training process
# alone on its cores is faster with spinning threads (page_polling: 0.83x of the CLI with PASSIVE).
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["CNNVIZ_SERVER_OMP_PASSIVE"] = "1"

import streamlit as st  # noqa: E402

from ui.nav import PAGES, server_lifespan  # noqa: E402


def main() -> None:
    # imported here, not at the top: importing its st.cache_data functions when `streamlit run`
    # imports this module, before Streamlit's runtime exists, logs "No runtime found" warnings
    from ui import auth, image_state, serving

    st.set_page_config(page_title="cnnviz", page_icon=":material/blur_on:", layout="wide")
    serving.note_session()  # under `python -m cnnviz serve`: one log line per session and worker

    sections: dict[str, list] = {}
    for p in PAGES:
        sections.setdefault(p.section, []).append(
            st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url, default=p.url == "home")
        )
    # with sign-in ([auth] in secrets.toml), a signed-out visitor sees the home page and Sign in only
    signed_out = auth.signed_out()
    page = st.navigation(sections, position="hidden" if signed_out else "sidebar", expanded=True)  # every page listed
    auth.sidebar_account()
    if signed_out and page.url_path not in ("", "home"):
        auth.require_user()  # the sign-in box, and stop
    if not signed_out:
        image_state.sidebar_picker()
    page.run()


if __name__ == "__main__":  # a script run
    main()
else:  # imported by `streamlit run app.py` (or `uvicorn app:app`) when the server starts
    app = st.App(__file__, lifespan=server_lifespan)
