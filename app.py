"""cnnviz: entry point. `streamlit run app.py`

Builds the navigation over pages/ and draws the shared sidebar (the image picker).
Nothing here imports torch, so the first page paints at once.
"""

import streamlit as st

from ui import image_state
from ui.nav import PAGES

st.set_page_config(page_title="cnnviz", page_icon=":material/blur_on:", layout="wide")

sections: dict[str, list] = {}
for p in PAGES:
    sections.setdefault(p.section, []).append(
        st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url, default=p.url == "home")
    )
page = st.navigation(sections)
image_state.sidebar_picker()
page.run()
