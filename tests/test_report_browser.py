"""report.html in a real browser: headless Chromium loads it from disk, every image decodes
(naturalWidth > 0), and a screenshot of the page is taken and is not blank.

Set CHARNN_CHROMIUM to a browser binary to choose one; set CHARNN_SCREENSHOT_DIR to keep the
screenshot (report.png) for a look. Skipped only where no Chromium can be found.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from charnn import cli

from _browser import CHROMIUM, needs_chromium

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--hide-scrollbars")

# Written into the page after the load event: for every image, whether it finished loading
# and its natural size. --dump-dom prints the DOM with it.
IMAGE_PROBE = """<script>
window.addEventListener("load", function () {
  var parts = [];
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    parts.push(im.complete + ":" + im.naturalWidth + "x" + im.naturalHeight);
  }
  var out = document.createElement("pre");
  out.id = "charnn-image-probe";
  out.textContent = "images=" + document.images.length + " " + parts.join(" ");
  document.body.appendChild(out);
});
</script>"""

pytestmark = needs_chromium


def browse(tmp_path: Path, profile: str, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90,
                          env={**os.environ, "HOME": str(tmp_path)})


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    rng = random.Random(5)
    words = "to be or not that is the question whether tis nobler in the mind".split()
    text = root / "tiny.txt"
    text.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 9)))
                              for _ in range(200)) + "\n", encoding="utf-8")
    out = root / "rep"
    assert cli.main(["report", str(text), "--updates", "300", "--hidden", "10",
                     "--sample-every", "100", "--backend", "numpy", "--out", str(out),
                     "--no-progress"]) == 0
    return out / "report.html"


def test_images_load_in_chromium(report_page, tmp_path):
    probe = tmp_path / "probe.html"                     # the report, plus the probe script
    page = report_page.read_text(encoding="utf-8")
    probe.write_text(page.replace("</body>", IMAGE_PROBE + "\n</body>"), encoding="utf-8")
    result = browse(tmp_path, "profile-dom", "--virtual-time-budget=10000", "--dump-dom",
                    probe.as_uri())
    found = re.search(r'<pre id="charnn-image-probe">images=(\d+) ?([^<]*)</pre>', result.stdout)
    assert found, f"the probe did not run; chromium said:\n{result.stderr[-2000:]}"
    count, entries = int(found.group(1)), found.group(2).split()
    assert count >= 1 and len(entries) == count
    for entry in entries:
        complete, size = entry.split(":")
        width, height = map(int, size.split("x"))
        assert complete == "true" and width > 0 and height > 0, entry
    for heading in ("1 Gradient check", "2 Training", "3 Samples while learning",
                    "4 The best model", "5 Facts of the run"):
        assert heading in result.stdout


def test_screenshot(report_page, tmp_path):
    shot = tmp_path / "report.png"
    result = browse(tmp_path, "profile-shot", "--window-size=1280,2600",
                    f"--screenshot={shot}", report_page.as_uri())
    assert shot.is_file(), f"no screenshot; chromium said:\n{result.stderr[-2000:]}"
    import matplotlib.image
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    rgb = pixels[..., :3]
    # Not a blank page: text, table rules and the plot's lines make many non-white pixels,
    # and the plot's blue line is there (the figure was drawn, not just its frame).
    assert (rgb.mean(axis=2) < 0.9).mean() > 0.01
    blue = (rgb[..., 2] > 0.55) & (rgb[..., 0] < 0.35) & (rgb[..., 1] > 0.3) & (rgb[..., 1] < 0.65)
    assert blue.sum() > 200
    keep = os.environ.get("CHARNN_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
