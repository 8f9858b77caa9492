// Hover thumbnails for a st.plotly_chart scatter (ui/scatter_hover.py).
// The chart stays Streamlit's own (its box/lasso/click selections reach Python as before); this
// component finds that chart's plotly graph div (inside the container keyed `data.box`), listens to
// its plotly_hover / plotly_unhover events, and shows a floating box by the mouse with the point's
// tile of the sprite sheet (one picture of every point, CSS background-position), scaled up
// pixelated, and the point's hover text. Works for scattergl (2-D) and scatter3d (3-D).
export default function (component) {
  const { data, parentElement } = component;
  const d = data || {};
  let box = parentElement.querySelector(".cnnviz-hover");
  if (!box) {
    box = document.createElement("div");
    box.className = "cnnviz-hover";
    box.innerHTML = '<div class="cnnviz-hover-thumb"></div><div class="cnnviz-hover-text"></div>';
    parentElement.appendChild(box);
  }
  const thumb = box.querySelector(".cnnviz-hover-thumb");
  if (box.dataset.url !== (d.url || "")) {   // set once per sheet: the browser does not refetch it
    thumb.style.backgroundImage = d.url ? `url("${d.url}")` : "none";
    box.dataset.url = d.url || "";
  }
  const text = box.querySelector(".cnnviz-hover-text");
  const size = d.size || 96;
  const scale = size / (d.tile || 1);
  thumb.style.width = thumb.style.height = size + "px";
  thumb.style.backgroundSize = `${d.cols * d.tile * scale}px ${d.rows * d.tile * scale}px`;
  // fetch the sheet once per page (not on the first hover, nor again on a rerun): kept by URL, which
  // Streamlit names by the content's hash
  const sheets = (window.__cnnvizSprites = window.__cnnvizSprites || new Map());
  if (d.url && !sheets.has(d.url)) {
    const img = new Image();
    const entry = { img, status: "loading", boxes: new Set() };
    img.onload = () => { entry.status = "loaded"; entry.boxes.forEach((b) => { b.dataset.sprite = "loaded"; }); };
    img.onerror = () => { entry.status = "failed"; entry.boxes.forEach((b) => { b.dataset.sprite = "failed"; }); };
    img.src = d.url;
    sheets.set(d.url, entry);
    while (sheets.size > 4) sheets.delete(sheets.keys().next().value);   // the oldest sheets go
  }
  const sheet = d.url ? sheets.get(d.url) : null;
  box.dataset.sprite = sheet ? sheet.status : "none";
  if (sheet) sheet.boxes.add(box);
  let mouse = null;

  function place() {
    if (!mouse || box.style.display === "none") return;
    const w = box.offsetWidth, h = box.offsetHeight, gap = 18;
    let x = mouse.x - w - gap, y = mouse.y - h - gap;   // above-left: plotly's own label sits to the right
    if (x < 4) x = mouse.x + gap;
    if (y < 4) y = mouse.y + gap;
    box.style.left = x + "px";
    box.style.top = y + "px";
  }

  function show(ev) {
    const pt = ev && ev.points && ev.points[0];
    if (!pt) return;
    let cd = pt.customdata;
    if (cd === undefined && pt.data && pt.data.customdata) cd = pt.data.customdata[pt.pointNumber];
    const pos = Array.isArray(cd) || ArrayBuffer.isView(cd) ? Number(cd[1]) : NaN;
    if (!Number.isInteger(pos) || pos < 0 || pos >= d.count) return;
    const col = pos % d.cols, row = Math.floor(pos / d.cols);
    thumb.style.backgroundPosition = `${-col * d.tile * scale}px ${-row * d.tile * scale}px`;
    text.textContent = "";
    String(pt.hovertext || pt.text || "").split("<br>").forEach((line) => {
      const div = document.createElement("div");
      div.textContent = line;
      text.appendChild(div);
    });
    box.dataset.index = String(cd[0]);
    box.dataset.tile = String(pos);
    if (ev.event && ev.event.clientX !== undefined) mouse = { x: ev.event.clientX, y: ev.event.clientY };
    box.style.display = "block";
    place();
  }

  function hide() {
    box.style.display = "none";
  }

  function onMove(e) {
    mouse = { x: e.clientX, y: e.clientY };
    place();
  }

  const state = { show, hide, onMove };
  let gd = null;
  function attach() {
    const found = d.box ? document.querySelector(`.st-key-${d.box} .js-plotly-plot`) : null;
    if (!found || typeof found.on !== "function") return;
    if (found !== gd) {
      gd = found;
      if (!gd.__cnnvizHover) {   // one set of listeners per graph div; they call the latest mount's state
        gd.on("plotly_hover", (ev) => gd.__cnnvizHover && gd.__cnnvizHover.show(ev));
        gd.on("plotly_unhover", () => gd.__cnnvizHover && gd.__cnnvizHover.hide());
        gd.addEventListener("mousemove", (e) => gd.__cnnvizHover && gd.__cnnvizHover.onMove(e));
        gd.addEventListener("mouseleave", () => gd.__cnnvizHover && gd.__cnnvizHover.hide());
      }
    }
    gd.__cnnvizHover = state;
    box.dataset.attached = "yes";
  }
  hide();
  attach();
  const timer = setInterval(attach, 400);   // the chart may draw after this, or be redrawn
  return () => {
    clearInterval(timer);
    if (gd && gd.__cnnvizHover === state) gd.__cnnvizHover = null;
    if (sheet) sheet.boxes.delete(box);
    hide();
  };
}
