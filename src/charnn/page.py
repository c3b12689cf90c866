"""`charnn export MODEL --html OUT.html`: the model as one web page that writes text.

The page is web/model_page.html with web/model_page.js and the model inlined: the weights as
one base64 string of little-endian float32 (4 bytes a weight, a third more in base64: the
shipped 2-layer GRU of 256 units is about 3.6 MB), the vocabulary and the start state. It needs
no server and no network (its Content-Security-Policy allows nothing to be fetched): open it,
or send it to someone who opens it.

A float64 model is written in float32; the page computes in float64 over those weights, so its
probabilities agree with charnn's to float32 rounding (within 1e-5, as the browser test holds).
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from pathlib import Path

import numpy as np

from .export import export_config, start_state

PRIME = "The "


def page_model(ckpt) -> dict:
    """What the page's script reads as MODEL (see web/model_page.js)."""
    params, config, network = ckpt.params, ckpt.meta.get("config", {}), ckpt.network
    arrays = dict(params.items())
    arrays["start"] = start_state(ckpt)                  # (layers, S, m)
    tensors, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a, dtype="<f4")
        tensors[name] = {"shape": list(a.shape), "offset": offset}
        blobs.append(a.tobytes())
        offset += a.size
    return {"cell": network.cell, "layers": network.layers, "hidden": network.hidden,
            "state_vectors": network.state_vectors,
            "vocab": ckpt.meta["vocab"], "records": bool(config.get("records")),
            "tensors": tensors, "weights": base64.b64encode(b"".join(blobs)).decode("ascii")}


def render(ckpt, name: str) -> str:
    """The page's HTML."""
    web = resources.files("charnn").joinpath("web")
    template = web.joinpath("model_page.html").read_text(encoding="utf-8")
    script = web.joinpath("model_page.js").read_text(encoding="utf-8")
    config, network = export_config(ckpt), ckpt.network
    t = config["training"]
    held = t.get("held_out")
    about = f"{network.describe()}, {len(config['vocab'])} characters"
    if t.get("corpus"):
        about += f"; trained on {t['corpus']}"
        if isinstance(t.get("updates"), int):
            about += f" for {t['updates']:,} updates"
    if held:
        about += f"; held-out loss {held['bits']:.3f} bits/char"
    vocab = ckpt.meta["vocab"]
    prime = PRIME if all(ch in vocab for ch in PRIME) else ""
    # JSON inside <script>: "</" must not close the element early
    model = json.dumps(page_model(ckpt), ensure_ascii=True).replace("</", "<\\/")
    parts = {"title": html.escape(f"{name}: a character-level {network.abbreviation}"),
             "about": html.escape(about), "prime": html.escape(prime, quote=True)}
    for key, value in parts.items():
        template = template.replace("{{" + key + "}}", value)
    # the script and the model last, so that nothing inside them is taken for a placeholder
    head, tail = template.split("{{model}}")
    tail = tail.replace("{{script}}", script.replace("</", "<\\/"))
    return head + model + tail


def write_page(ckpt, out: str | Path, name: str = "model") -> int:
    """Write the page; return its size in bytes."""
    text = render(ckpt, name)
    out = Path(out)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out.stat().st_size
