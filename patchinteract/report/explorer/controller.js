// The explorer's controller: the selection (image, head, patch) and what every view shows of it.
// The page (page.py) names each Bokeh model it draws and hands the list of names over (page.names);
// this script looks them up by name, fills their data sources, and is called back by widgets and taps.
// window.EXPLORER_PAGE holds what the page embeds; data/<image_id>.js hands over one image's payload.
"use strict";

const PatchExplorer = (() => {
  const page = window.EXPLORER_PAGE;
  const payloads = {};
  const waiting = {};
  const state = { image: null, head: 0, patch: 0, busy: false };
  const nHeadRows = page.n_layers * page.n_heads;
  const wholeHead = page.modes.indexOf(1); // the importance views show mode 1, the whole head pruned
  const nPatches = page.grid[0] * page.grid[1];

  const model = (name) => {
    if (!page.names.includes(name)) throw new Error(`'${name}' is not one of the page's model names`);
    return Bokeh.documents[0].get_model_by_name(name);
  };
  const bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const floats = (text) => new Float32Array(bytes(text).buffer);
  const headName = (flat) => `layer ${Math.floor(flat / page.n_heads)}, head ${flat % page.n_heads}`;

  // Attention and U rows: uint8 scaled by each row's maximum (data.py: quantised_rows).
  function rows(encoded) {
    const q = bytes(encoded.q), peak = floats(encoded.max), n = encoded.shape[encoded.shape.length - 1];
    return (row) => Array.from(q.subarray(row * n, (row + 1) * n), (v) => (v * peak[row]) / 255);
  }

  function receive(imageId, payload) {
    payload.attentionRow = rows(payload.attention);
    payload.uRow = rows(payload.U);
    payload.importanceValues = floats(payload.importance);
    payloads[imageId] = payload;
    (waiting[imageId] || []).forEach((done) => done(payload));
    delete waiting[imageId];
  }

  function load(imageId, done) {
    if (payloads[imageId]) return done(payloads[imageId]);
    if (!waiting[imageId]) {
      waiting[imageId] = [];
      const script = document.createElement("script");
      script.src = `data/${imageId}.js`;
      script.onerror = () => say(`no data for image ${imageId} (data/${imageId}.js is missing)`);
      document.head.appendChild(script);
    }
    waiting[imageId].push(done);
  }

  function say(text) {
    model("status").text = text;
  }

  function select(name, indices) {
    // Selections echo back through their callbacks; state.busy stops the echo.
    const source = model(name);
    state.busy = true;
    source.selected.indices = indices;
    state.busy = false;
  }

  // ------------------------------------------------------------------ picking

  function pickImage(imageId) {
    const index = page.image_ids.indexOf(imageId);
    if (index < 0) {
      say(`image ${imageId} is not among the explorer's ${page.image_ids.length} images`);
      return;
    }
    state.image = imageId;
    select("overview_source", [index]);
    load(imageId, () => {
      if (state.image === imageId) render();
    });
  }

  function pickHead(flat) {
    state.head = flat;
    if (state.image !== null) render();
  }

  function pickPatch(patch) {
    state.patch = patch;
    if (state.image !== null) render();
  }

  function onTap(kind, source) {
    if (state.busy || source.selected.indices.length === 0) return;
    const index = source.selected.indices[0];
    if (kind === "image") pickImage(page.image_ids[index]);
    if (kind === "head") pickHead(source.data.flat[index]);
    if (kind === "patch") pickPatch(index);
  }

  function onSearch(value) {
    const imageId = parseInt(String(value).trim(), 10);
    if (Number.isNaN(imageId)) say(`'${value}' is not an image id`);
    else pickImage(imageId);
  }

  // ------------------------------------------------------------------ views

  // the class folder's name (the manifest's class_name), as users named their classes
  function className(label) {
    return page.class_names[label] ?? String(label);
  }

  function render() {
    const payload = payloads[state.image];
    if (!payload) return;
    const layer = Math.floor(state.head / page.n_heads), head = state.head % page.n_heads;
    say(
      `<b>Image ${payload.image_id}</b> (class ${className(payload.label)}, predicted ${className(payload.prediction)}) · ` +
        `<b>${headName(state.head)}</b> · <b>patch ${state.patch}</b> ` +
        `(row ${Math.floor(state.patch / page.grid[1])}, column ${state.patch % page.grid[1]})`
    );
    renderImportance(payload);
    renderStrength(payload);
    renderPatterns(payload, layer, head);
    renderPatches(payload, layer, head);
  }

  // position: the mode's index in page.modes (a model without prefix tokens has modes 0, 1 and 4)
  function importanceOf(payload, flat, position, metric) {
    const m = page.metrics.length, k = page.modes.length;
    return payload.importanceValues[(flat * k + position) * m + metric];
  }

  function renderImportance(payload) {
    const data = { flat: [], name: [] };
    page.metrics.forEach((metric) => (data[metric] = []));
    for (let flat = 0; flat < nHeadRows; flat++) {
      data.flat.push(flat);
      data.name.push(headName(flat));
      page.metrics.forEach((metric, m) => data[metric].push(importanceOf(payload, flat, wholeHead, m)));
    }
    model("importance_source").data = data;
    select("importance_source", [state.head]);
    const metric = page.metrics.indexOf(model("mode_metric").value);
    model("modes_source").data = {
      mode: model("modes_figure").x_range.factors,
      value: page.modes.map((mode, position) => importanceOf(payload, state.head, position, metric)),
    };
    const mode = page.modes.indexOf(parseInt(model("pruning_mode").value, 10));
    const classes = payload.top_class[state.head][mode], probs = payload.top_prob[state.head][mode];
    model("top5_source").data = {
      rank: classes.map((c, r) => `${r + 1}: ${className(c)}`),
      prob: probs,
      color: classes.map((c) => (c === payload.label ? "#2ca02c" : "#999999")),
    };
    model("top5_figure").y_range.factors = classes.map((c, r) => `${r + 1}: ${className(c)}`).reverse();
    model("top5_figure").title.text =
      `Top-5 under mode ${model("pruning_mode").value} (green: true class)`;
    model("modes_figure").title.text = `Pruning modes of ${headName(state.head)}: ${model("mode_metric").value}`;
  }

  function renderStrength(payload) {
    model("entropy_source").data = {
      flat: [...Array(nHeadRows).keys()],
      layer: [...Array(nHeadRows).keys()].map((f) => Math.floor(f / page.n_heads) + ((f % page.n_heads) - (page.n_heads - 1) / 2) * 0.08),
      entropy: payload.entropy,
      name: [...Array(nHeadRows).keys()].map(headName),
    };
    select("entropy_source", [state.head]);
    const hops = payload.hops[state.head];
    model("khop_source").data = { hop: hops.map((_, k) => k), strength: hops };
    model("khop_figure").title.text = `k-hop strength s_k of ${headName(state.head)}`;
    const values = page.entropy.map((row) => row[state.head]);
    // At least 0.01 wide: a head whose entropy hardly varies gets one readable bar, not 20 slivers.
    const middle = (Math.min(...values) + Math.max(...values)) / 2;
    const low = Math.min(Math.min(...values), middle - 0.005), high = Math.max(Math.max(...values), middle + 0.005);
    const bins = 20, width = (high - low) / bins;
    const counts = new Array(bins).fill(0);
    values.forEach((v) => counts[Math.min(bins - 1, Math.floor((v - low) / width))]++);
    model("hist_source").data = {
      left: counts.map((_, i) => low + i * width),
      right: counts.map((_, i) => low + (i + 1) * width),
      count: counts,
    };
    model("entropy_marker").location = payload.entropy[state.head];
    model("hist_figure").title.text = `Its entropy over ${values.length} images (red: this one)`;
  }

  function renderPatterns(payload, layer, head) {
    const kind = model("pattern_kind").active === 0 ? "cls" : "patch";
    const all = page.patterns;
    const x = all[`${kind}_x`], y = all[`${kind}_y`];
    const background = model("patterns_all");
    if (background.tags[0] !== kind) {
      background.data = { x, y, color: all.cluster.map((c) => page.palette[(c + 10) % page.palette.length]) };
      background.tags = [kind];
    }
    const mine = { x: [], y: [], flat: [], name: [] };
    all.image_id.forEach((id, i) => {
      if (id !== payload.image_id) return;
      const flat = all.layer[i] * page.n_heads + all.head[i];
      mine.x.push(x[i]);
      mine.y.push(y[i]);
      mine.flat.push(flat);
      mine.name.push(headName(flat));
    });
    model("patterns_image").data = mine;
    select("patterns_image", [mine.flat.indexOf(state.head)].filter((i) => i >= 0));
    model("patterns_figure").title.text =
      `${kind === "cls" ? "CLS" : "Patch"} patterns: all heads, image ${payload.image_id}'s in blue`;

    const shown = page.attention_layers.indexOf(layer);
    const matrix = model("matrix_source");
    const figure = model("matrix_figure");
    if (shown < 0) {
      matrix.data = { image: [], dw: [], dh: [] };
      figure.title.text = `Layer ${layer} is not among explorer.attention_layers`;
      return;
    }
    const tokens = payload.attention.shape[3];
    const threshold = model("threshold").value;
    // Row q of the array is query q (the figure's y axis runs downwards).
    const values = new Float32Array(tokens * tokens);
    for (let query = 0; query < tokens; query++) {
      const row = payload.attentionRow((shown * page.n_heads + head) * tokens + query);
      const peak = Math.max(...row);
      row.forEach((v, key) => (values[query * tokens + key] = v >= threshold * peak ? v : NaN));
    }
    const { ndarray } = Bokeh.require("core/util/ndarray");
    matrix.data = { image: [ndarray(values, { dtype: "float32", shape: [tokens, tokens] })], dw: [tokens], dh: [tokens] };
    figure.title.text = `Attention of ${headName(state.head)}` + (threshold > 0 ? ` (≥ ${threshold} of row max)` : "");
  }

  function patchOverlay(payload, layer, head) {
    const kind = model("overlay").value;
    const p = state.patch;
    if (kind === "attention row") {
      const shown = page.attention_layers.indexOf(layer);
      if (shown < 0) return { values: new Array(nPatches).fill(NaN), note: `layer ${layer} not kept` };
      const tokens = payload.attention.shape[3];
      const row = payload.attentionRow((shown * page.n_heads + head) * tokens + page.n_prefix + p);
      return { values: row.slice(page.n_prefix), note: `attention of patch ${p} (${headName(state.head)})` };
    }
    if (kind === "U row") return { values: payload.uRow(p), note: `U of patch ${p} (eq. 2-3)` };
    if (kind === "DIP score") return { values: payload.dip_score, note: "DIP score of every patch" };
    if (kind === "AWD window") {
      const alpha = model("alpha").value;
      const [x0, y0, x1, y1] = payload.windows[alpha][p];
      const { left: xs, top: ys } = model("patch_source").data; // each patch's (x, y): page.py, patch_xy
      const values = xs.map((x, j) => (x >= x0 && x <= x1 && ys[j] >= y0 && ys[j] <= y1 ? 1 : 0));
      return { values, note: `AWD window of patch ${p} at α = ${alpha} (eq. 4-5)` };
    }
    if (kind === "DIP dropped") {
      const beta = model("beta").value;
      return { values: payload.keep[beta].map((k) => 1 - k), note: `patches DIP drops at β = ${beta}` };
    }
    if (kind === "responsive field") {
      const field = model("field").value;
      const packed = bytes(payload.fields[field]);
      const width = packed.length / nPatches;
      const values = [...Array(nPatches).keys()].map((j) => (packed[p * width + (j >> 3)] >> (7 - (j & 7))) & 1);
      return { values, note: `responsive field of patch ${p} (${field}, eq. 6-7)` };
    }
    if (kind === "keypoints") {
      if (!payload.keypoints) return { values: new Array(nPatches).fill(NaN), note: "no SIFT stage" };
      return { values: payload.keypoints, note: "SIFT keypoints per patch (t_j)" };
    }
    if (kind === "θ") {
      if (!payload.theta) return { values: new Array(nPatches).fill(NaN), note: "no SIFT stage" };
      return { values: payload.theta[layer].map((v) => (v < 0 ? NaN : v)), note: `θ_i of layer ${layer} (head mean)` };
    }
    return { values: new Array(nPatches).fill(NaN), note: kind };
  }

  function renderPatches(payload, layer, head) {
    model("picture_source").data = { url: [payload.picture], x: [0], y: [0], w: [page.grid[1]], h: [page.grid[0]] };
    const { values, note } = patchOverlay(payload, layer, head);
    const finite = values.filter((v) => Number.isFinite(v));
    const peak = finite.length ? Math.max(...finite) : 1;
    const source = model("patch_source");
    source.data = Object.assign({}, source.data, {
      raw: values,
      value: values.map((v) => (Number.isFinite(v) && peak > 0 ? v / peak : NaN)),
      alpha: values.map((v) => (Number.isFinite(v) && v > 0 ? 0.5 : 0)),
      line: [...Array(nPatches).keys()].map((j) => (j === state.patch ? 3 : 0.3)),
    });
    select("patch_source", [state.patch]);
    model("picture_figure").title.text = `Image ${payload.image_id}: ${note}`;
  }

  function start() {
    if (!window.Bokeh || Bokeh.documents.length === 0 || !model("status")) {
      setTimeout(start, 20);
      return;
    }
    const missing = page.names.filter((name) => !Bokeh.documents[0].get_model_by_name(name));
    if (missing.length > 0) {
      say(`the page lacks the models ${missing.join(", ")}`);
      return;
    }
    pickImage(page.image_ids[0]);
  }

  return { receive, pickImage, pickHead, pickPatch, onTap, onSearch, render, start, state, payloads };
})();

window.PatchExplorer = PatchExplorer;
document.addEventListener("DOMContentLoaded", PatchExplorer.start);
