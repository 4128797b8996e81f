"""Opens a real report in headless Chromium and checks that every embedded image decodes in a browser."""

import re
import subprocess
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from convlstm.report import plot_scores_by_lead_time, write_comparison_gif, write_report

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Chromium not found at /usr/bin/chromium; install Debian's chromium package"
)

# Appended to a copy of the report: on load, record every image's decoded size (or "broken") on <body>.
PROBE = """<script>
window.addEventListener("load", function () {
  var sizes = Array.prototype.map.call(document.images, function (image) {
    return image.complete && image.naturalWidth > 0 ? image.naturalWidth + "x" + image.naturalHeight : "broken";
  });
  document.body.setAttribute("data-image-sizes", sizes.join(","));
});
</script>
"""


def dump_dom(page: Path, profile: Path) -> str:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def image_sizes(dom: str) -> list[str]:
    found = re.search(r'data-image-sizes="([^"]*)"', dom)
    assert found is not None, "the probe script did not run: " + dom[:500]
    return found.group(1).split(",")


def test_images_load_in_chromium(tmp_path):
    out = tmp_path / "run"
    scores = {
        name: {"csi@0.5_by_lead_time": torch.linspace(0.8, 0.3, 5) - k / 10, "csi@0.5": torch.tensor(0.55 - k / 10)}
        for k, name in enumerate(["ConvLSTM", "persistence"])
    }
    figure = plot_scores_by_lead_time(scores, out / "scores.png")
    frames = torch.zeros(8, 1, 32, 32)
    for t in range(8):
        frames[t, 0, 4 + 2 * t : 12 + 2 * t, 6:14] = 1.0
    gif = write_comparison_gif(frames[:4], frames[4:], {"ConvLSTM": frames[4:] * 0.8}, out / "forecast.gif")
    report = write_report(out, title="Chromium check", metrics=scores, figures=[figure], animations=[gif])

    page = report.read_text(encoding="utf-8")
    csp = "default-src 'none';"
    assert csp in page
    # The probe needs inline scripts; images stay restricted to data: URIs, so a file reference would be blocked.
    probed = page.replace(csp, csp + " script-src 'unsafe-inline';", 1)
    probed = probed.replace("</body>", f'<img src="{figure.name}" alt="not embedded">\n{PROBE}</body>', 1)
    (out / "probe.html").write_text(probed, encoding="utf-8")

    sizes = image_sizes(dump_dom(out / "probe.html", tmp_path / "profile"))
    expected = []
    for file in (figure, gif):
        height, width = iio.improps(file, index=0).shape[:2]
        expected.append(f"{width}x{height}")
    assert page.count("<img ") == 2
    assert sizes == [*expected, "broken"]  # both embedded images decode; the file reference is refused


def test_a_broken_image_is_detected(tmp_path):
    """The probe can fail: a corrupt data URI counts as broken."""
    tmp_path.joinpath("media").mkdir()
    png = tmp_path / "media" / "tiny.png"
    iio.imwrite(png, np.zeros((4, 6, 3), dtype=np.uint8))
    report = write_report(tmp_path / "run", title="broken", figures=[png])
    page = report.read_text(encoding="utf-8")
    page = page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    page = page.replace("</body>", PROBE + "</body>", 1)
    page = page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    (tmp_path / "run" / "probe.html").write_text(page, encoding="utf-8")
    assert image_sizes(dump_dom(tmp_path / "run" / "probe.html", tmp_path / "profile")) == ["broken"]
