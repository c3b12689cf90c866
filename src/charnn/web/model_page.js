// A charnn model that runs in the page: the network's math, written out as networks/ writes it
// in numpy, over weights embedded in the page (MODEL, filled in by charnn's page.py).
//
// MODEL = {cell: "rnn" | "lstm" | "gru" | "mlstm", layers, hidden, state_vectors (S: vectors in a layer's
//          state, 2 for the LSTM's h and c, else 1), vocab (a string, index = position),
//          records (a record model starts and stops at END_OF_RECORD), tensors: {name: {shape,
//          offset}} (offset and size in float32s), weights: base64 of little-endian float32}.
// The network (cell, layers, S) is what the exporter states from its spec; nothing here reads
// it off the tensors' names or shapes.
// Names are charnn's: W_ih{l}, W_hh{l}, b_ih{l} for the vanilla RNN; W_ih{l}, W_hh{l},
// b_ih{l}, b_hh{l} (PyTorch's layouts and gate orders) for the LSTM and GRU; W_ih{l},
// W_mh{l}, W_hm{l}, b_ih{l} for the mLSTM; V, c for all; start (layers, S, m) is
// the state sampling starts from, as charnn sample starts (the state training carried, or
// zeros). The arithmetic is in float64 over float32 weights, so it agrees with charnn to float32
// rounding.
"use strict";

const END_OF_RECORD = "\x1e";

const NET = (function load(model) {
  const bytes = Uint8Array.from(atob(model.weights), (ch) => ch.charCodeAt(0));
  const all = new Float32Array(bytes.buffer);        // every browser is little-endian
  const t = {};
  for (const [name, info] of Object.entries(model.tensors)) {
    const size = info.shape.reduce((a, b) => a * b, 1);
    t[name] = all.subarray(info.offset, info.offset + size);
  }
  const index = new Map([...model.vocab].map((ch, i) => [ch, i]));
  return { ...model, t, index, K: [...model.vocab].length, m: model.hidden, chars: [...model.vocab] };
})(MODEL);

const sigmoid = (a) => 1 / (1 + Math.exp(-a));

// out[i] = bias[i] + sum_j M[i, j] v[j] for rows [r0, r0 + n) of a row-major M with `cols`
// columns (v a vector), or + M[i, x] when v is a character index (a one-hot input: its column).
function affine(M, cols, r0, n, v, bias) {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const row = (r0 + i) * cols;
    let s = bias ? bias[r0 + i] : 0;
    if (typeof v === "number") s += M[row + v];
    else for (let j = 0; j < cols; j++) s += M[row + j] * v[j];
    out[i] = s;
  }
  return out;
}

// The state: one {h, c} per layer (c only where the cell keeps one: state_vectors 2).
function startState() {
  const { m, layers, state_vectors: S, t } = NET;
  const state = [];
  for (let l = 0; l < layers; l++) {
    const h = Float64Array.from(t.start.subarray((l * S) * m, (l * S + 1) * m));
    const c = S === 2 ? Float64Array.from(t.start.subarray((l * S + 1) * m, (l * S + 2) * m)) : null;
    state.push({ h, c });
  }
  return state;
}

// Each cell's math, as networks/ writes it in numpy: layer l's new {h, c} from its input (the
// character's index in layer 0, the layer below's new h above it, `cols` wide) and its state.
const CELLS = {
  rnn(t, m, l, input, cols, h) {                       // h = tanh(W_hh h + W_ih x + b_ih)
    const a = affine(t["W_ih" + l], cols, 0, m, input, t["b_ih" + l]);
    const wh = affine(t["W_hh" + l], m, 0, m, h, null);
    return { h: a.map((v, i) => Math.tanh(v + wh[i])), c: null };
  },
  gru(t, m, l, input, cols, h) {                       // PyTorch's nn.GRU: gates r, z, n
    const ax = affine(t["W_ih" + l], cols, 0, 3 * m, input, t["b_ih" + l]);
    const ah = affine(t["W_hh" + l], m, 0, 3 * m, h, t["b_hh" + l]);
    const hNew = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      const r = sigmoid(ax[i] + ah[i]);
      const z = sigmoid(ax[m + i] + ah[m + i]);
      const n = Math.tanh(ax[2 * m + i] + r * ah[2 * m + i]);   // r scales W_hn h + b_hn
      hNew[i] = (1 - z) * n + z * h[i];
    }
    return { h: hNew, c: null };
  },
  lstm(t, m, l, input, cols, h, c) {                   // PyTorch's nn.LSTM: gates i, f, g, o
    const ax = affine(t["W_ih" + l], cols, 0, 4 * m, input, t["b_ih" + l]);
    const ah = affine(t["W_hh" + l], m, 0, 4 * m, h, t["b_hh" + l]);
    const hNew = new Float64Array(m);
    const cNew = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      const ig = sigmoid(ax[i] + ah[i]);
      const fg = sigmoid(ax[m + i] + ah[m + i]);
      const gg = Math.tanh(ax[2 * m + i] + ah[2 * m + i]);
      const og = sigmoid(ax[3 * m + i] + ah[3 * m + i]);
      cNew[i] = fg * c[i] + ig * gg;
      hNew[i] = og * Math.tanh(cNew[i]);
    }
    return { h: hNew, c: cNew };
  },
  mlstm(t, m, l, input, cols, h, c) {                  // networks/mlstm.py: m_t, then i, f, g, o
    const ax = affine(t["W_ih" + l], cols, 0, 5 * m, input, t["b_ih" + l]);
    const mh = affine(t["W_mh" + l], m, 0, m, h, null);
    const mt = mh.map((v, i) => ax[i] * v);             // m_t = (W_mx x + b_m) * (W_mh h)
    const a = affine(t["W_hm" + l], m, 0, 4 * m, mt, null);
    const hNew = new Float64Array(m);
    const cNew = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      const ig = sigmoid(ax[m + i] + a[i]);
      const fg = sigmoid(ax[2 * m + i] + a[m + i]);
      const gg = Math.tanh(ax[3 * m + i] + a[2 * m + i]);
      const og = sigmoid(ax[4 * m + i] + a[3 * m + i]);
      cNew[i] = fg * c[i] + ig * gg;
      hNew[i] = og * Math.tanh(cNew[i]);
    }
    return { h: hNew, c: cNew };
  },
};
if (!(NET.cell in CELLS)) throw new Error(`this page cannot run a ${NET.cell} cell`);

// One character x through every layer: the new state (layer l > 0 reads layer l-1's new h).
function step(state, x) {
  const { m, K, cell, t } = NET;
  const next = [];
  let input = x;                                       // layer 0: the character's index
  for (let l = 0; l < state.length; l++) {
    const { h, c } = state[l];
    const layer = CELLS[cell](t, m, l, input, l === 0 ? K : m, h, c);
    next.push(layer);
    input = layer.h;
  }
  return next;
}

// p = softmax((V h + c) / T) of the top layer's h; the largest logit is subtracted first so
// that exp cannot overflow.
function probabilities(state, temperature) {
  const { m, K, t } = NET;
  const o = affine(t.V, m, 0, K, state[state.length - 1].h, t.c);
  let max = -Infinity;
  for (let k = 0; k < K; k++) { o[k] /= temperature; if (o[k] > max) max = o[k]; }
  let sum = 0;
  for (let k = 0; k < K; k++) { o[k] = Math.exp(o[k] - max); sum += o[k]; }
  for (let k = 0; k < K; k++) o[k] /= sum;
  return o;
}

function encode(text) {
  const out = [];
  for (const ch of text) {
    if (!NET.index.has(ch)) {
      throw new Error(`the prime has ${JSON.stringify(ch)}, which the model never saw; use ` +
                      "only characters of its training text");
    }
    out.push(NET.index.get(ch));
  }
  return out;
}

// As charnn's sampling.start_state: the state after the prime but its last character, and that
// character; without a prime, the start state and a record start, a newline or a space.
function begin(prime) {
  let state = startState();
  const xs = encode(prime);
  if (xs.length) {
    for (const x of xs.slice(0, -1)) state = step(state, x);
    return { state, x: xs[xs.length - 1] };
  }
  for (const ch of [END_OF_RECORD, "\n", " "]) {
    if (NET.index.has(ch)) return { state, x: NET.index.get(ch) };
  }
  return { state, x: 0 };
}

// The next character's probabilities after reading the whole prime (temperature 1): what
// charnn's model gives after the same prime, to float32 rounding.
function charnnProbabilities(prime) {
  const { state, x } = begin(prime);
  return Array.from(probabilities(step(state, x), 1));
}

// A small seeded generator (mulberry32): the same seed gives the same text in this page.
function generator(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6D2B79F5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

// Nucleus sampling: the most likely characters whose probabilities reach top-p, renormalised.
function draw(p, topP, random) {
  const order = Array.from(p.keys()).sort((i, j) => p[j] - p[i]);
  let kept = 0, mass = 0;
  while (kept < order.length && (kept === 0 || mass < topP)) mass += p[order[kept++]];
  let u = random() * mass;
  for (let i = 0; i < kept; i++) {
    u -= p[order[i]];
    if (u <= 0) return order[i];
  }
  return order[kept - 1];
}

// A generator of characters after `prime`: next() gives one character, "" at a record's end.
function sampler(prime, temperature, topP, seed) {
  let { state, x } = begin(prime);
  const random = generator(seed);
  const stop = NET.index.has(END_OF_RECORD) ? NET.index.get(END_OF_RECORD) : -1;
  return function next() {
    state = step(state, x);
    x = draw(probabilities(state, temperature), topP, random);
    return x === stop ? "" : NET.chars[x];
  };
}

// `length` characters after `prime` (fewer if a record model ends its record).
function charnnGenerate(prime, length, temperature = 1, topP = 1, seed = 1) {
  const next = sampler(prime, temperature, topP, seed);
  let out = "";
  for (let i = 0; i < length; i++) {
    const ch = next();
    if (ch === "") break;
    out += ch;
  }
  return out;
}

// -- the page --------------------------------------------------------------------------------

(function page() {
  const $ = (id) => document.getElementById(id);
  let running = 0;
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const run = ++running;                             // a new click stops the old text
    $("error").textContent = "";
    const prime = $("prime").value;
    const length = Math.max(1, Math.min(100000, parseInt($("length").value, 10) || 500));
    const temperature = parseFloat($("temperature").value);
    const topP = parseFloat($("top-p").value);
    if (!(temperature > 0)) { $("error").textContent = "give a temperature above 0, such as 0.8"; return; }
    if (!(topP > 0 && topP <= 1)) { $("error").textContent = "give a top-p in (0, 1], such as 0.95"; return; }
    const seedText = $("seed").value.trim();
    const seed = seedText === "" ? crypto.getRandomValues(new Uint32Array(1))[0] : parseInt(seedText, 10);
    let next;
    try { next = sampler(prime, temperature, topP, seed); } catch (e) { $("error").textContent = e.message; return; }
    const out = $("out");
    out.textContent = "";
    const shown = document.createElement("span");
    shown.className = "prime";
    shown.textContent = prime;
    const text = document.createTextNode("");
    out.append(shown, text);
    let made = 0;
    out.dataset.done = "false";
    (function chunk() {                                // a few characters per frame: the page stays live
      if (run !== running) return;
      const started = performance.now();
      let piece = "";
      while (made < length && performance.now() - started < 30) {
        const ch = next();
        if (ch === "") { made = length; break; }
        piece += ch;
        made++;
      }
      text.appendData(piece);
      if (made < length) requestAnimationFrame(chunk);
      else out.dataset.done = "true";
    })();
  });
})();
