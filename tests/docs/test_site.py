"""The documentation site builds strictly, every public name has its API entry, and the pages render in Chromium.

The site is built once per test session (``mkdocs build --strict`` into a temporary folder, about as long as
``make docs``); without the docs extra (``pip install -e '.[docs]'``) these tests are skipped.
"""

import argparse
import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.docs.test_docstring_markup import markup_problems
from tests.docs.test_docstrings import PACKAGES

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ["Tutorials", "How-to guides", "Explanation", "Reference", "Results"]

INSTALL = "pip install -e '.[docs]' to build and test the site"
pytest.importorskip("mkdocs", reason=f"mkdocs is not installed: {INSTALL}")
pytest.importorskip("material", reason=f"mkdocs-material is not installed: {INSTALL}")
pytest.importorskip("mkdocstrings_handlers.python", reason=f"mkdocstrings[python] is not installed: {INSTALL}")


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out


def nav_pages(nav: list) -> list[str]:
    """Every Markdown page the nav of mkdocs.yml names."""
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def built_page(site: Path, page: str) -> Path:
    folder = page.removesuffix(".md").removesuffix("index")
    return site / (folder + "/index.html" if folder else "index.html")


def test_strict_build_writes_every_nav_page(site: Path) -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # BaseLoader: skips !!python tags
    pages = nav_pages(config["nav"])
    assert len(pages) >= 30
    missing = [page for page in pages if not built_page(site, page).is_file()]
    assert missing == []


def test_every_public_name_has_an_api_entry(site: Path) -> None:
    """Submodules listed in ``__all__`` (``convlstm.models.unet``) are namespaces whose public names are documented
    through the package; dunders (``__version__``) are left out of the reference."""
    missing = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        page = (site / "reference" / "api" / package.removeprefix("convlstm.") / "index.html").read_text()
        for name in module.__all__:
            if name.startswith("__") or inspect.ismodule(getattr(module, name)):
                continue
            if f'id="{package}.{name}"' not in page:
                missing.append(f"{package}.{name}")
    assert missing == [], f"public names without an entry in the API reference: {missing}"


def test_api_pages_render_the_docstrings_markup(site: Path) -> None:
    """No raw Sphinx role, unresolved cross-reference or ``>>>`` prompt outside a code block on any page."""
    problems = []
    for page in sorted(site.rglob("*.html")):
        problems += [f"{page.relative_to(site)}: {problem}" for problem in markup_problems(page.read_text("utf-8"))]
    assert problems == [], "\n".join(problems[:40])


def test_api_signatures_are_formatted(site: Path) -> None:
    """mkdocstrings formats a long signature with ruff (in the docs extra), one parameter a line; without a
    formatter ConvLSTM's signature is one line of some 860 characters."""
    page = (site / "reference" / "api" / "layers" / "index.html").read_text(encoding="utf-8")
    start = page.index('id="convlstm.layers.ConvLSTM"')
    signature = re.search(r'<div class="doc-signature highlight"><pre>(.*?)</pre>', page[start:], re.DOTALL)
    assert signature is not None
    lines = re.sub(r"<[^>]+>", "", signature.group(1)).splitlines()
    assert len(lines) > 10
    assert max(len(line) for line in lines) <= 120


def test_cli_reference_has_every_command(site: Path) -> None:
    """The per-command reference generated from the parser (mkdocs_hooks/cli_reference.py) is on the built page."""
    from convlstm.cli.main import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    page = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in commands if f'id="convlstm-{name}"' not in page]
    assert len(commands) >= 8
    assert missing == []
    assert "runs/&lt;recipe name&gt;" in page  # help text shown as written, not eaten as an HTML tag


def test_model_page_lists_every_registered_model(site: Path) -> None:
    import convlstm

    page = (site / "choose-a-model" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in convlstm.list_models() if f"<code>{name}</code></td>" not in page]
    assert missing == [], f"registered models missing from the built model table: {missing}"


def test_no_page_loads_a_script_from_another_site(site: Path) -> None:
    """Offline the site must work as built: no Mermaid or other script from a CDN."""
    remote = []
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        remote += [f"{page.relative_to(site)}: {src}" for src in re.findall(r'<script[^>]+src="(https?:[^"]+)"', html)]
        if 'class="mermaid"' in html:
            remote.append(f"{page.relative_to(site)}: a Mermaid diagram")
    assert remote == []


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The site's own settings (validation, strict) turn a link to a missing page into a failed build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](tutorials/no-such-page.md).\n")
    config = tmp_path / "mkdocs.yml"
    # hooks: [] since the hooks' paths are relative to the configuration, and fill pages this site lacks
    config.write_text(f"INHERIT: {ROOT / 'mkdocs.yml'}\ndocs_dir: {docs}\nhooks: []\nnav:\n  - Home: index.md\n")
    result = build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr


# Appended to a copy of a page: on load, record every image's decoded size (or "broken") and the nav's section
# titles on <body>, where --dump-dom shows them.
PROBE = """<script>
window.addEventListener("load", function () {
  var sizes = Array.prototype.map.call(document.images, function (image) {
    return image.complete && image.naturalWidth > 0 ? image.naturalWidth + "x" + image.naturalHeight : "broken";
  });
  var sections = Array.prototype.map.call(
    document.querySelectorAll("nav.md-nav--primary > ul > li.md-nav__item--nested > label, "
      + "nav.md-nav--primary > ul > li.md-nav__item--nested > div > a"),
    function (node) { return node.textContent.trim(); });
  document.body.setAttribute("data-image-sizes", sizes.join(","));
  document.body.setAttribute("data-sections", sections.join("|"));
  document.body.setAttribute("data-article", document.querySelector("article").innerText.length);
});
</script>
"""


def render(page: Path, profile: Path) -> dict[str, str]:
    """Opens a copy of ``page`` (next to it, so relative links resolve) in headless Chromium; the probe's findings."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    probe.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    found = dict(re.findall(r'data-(image-sizes|sections|article)="([^"]*)"', result.stdout))
    assert set(found) == {"image-sizes", "sections", "article"}, "the probe did not run: " + result.stdout[:500]
    return found


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium not found at /usr/bin/chromium; install Debian's chromium")
def test_pages_render_in_chromium(site: Path, tmp_path: Path) -> None:
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    home = render(copy / "index.html", tmp_path / "profile")
    assert home["sections"].split("|") == SECTIONS
    sizes = home["image-sizes"].split(",")
    assert "broken" not in sizes
    assert len(sizes) >= 1  # the demo forecast
    assert int(home["article"]) > 500

    api = render(copy / "reference" / "api" / "layers" / "index.html", tmp_path / "profile")
    assert api["sections"].split("|") == SECTIONS
    assert "broken" not in api["image-sizes"].split(",")
    assert int(api["article"]) > 5000  # the generated reference of the layers, not an empty page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium not found at /usr/bin/chromium; install Debian's chromium")
def test_a_missing_image_is_detected(site: Path, tmp_path: Path) -> None:
    """The probe can fail: the home page with its picture removed reports it broken."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    (copy / "images" / "demo_forecast.png").unlink()
    assert "broken" in render(copy / "index.html", tmp_path / "profile")["image-sizes"].split(",")


# Appended to a copy of the layers' API page: records how the page's examples came out, then removes what comes
# before ConvGRUCell's entry (headless Chromium draws a scrolled page blank) and records where its gate equations are
# drawn, with their font and background.
EQUATIONS_PROBE = """<script>
window.addEventListener("load", function () {
  document.body.setAttribute("data-prompts", document.querySelectorAll(".doc-contents pre .gp").length);
  document.body.setAttribute("data-quotes", document.querySelectorAll("blockquote blockquote").length);
  var blocks = Array.prototype.filter.call(document.querySelectorAll(".doc-contents pre"), function (pre) {
    return pre.textContent.indexOf("r ∘ (W_hn * h + b_hn)") >= 0;
  });
  var found = blocks.length === 1 ? blocks[0] : null;
  var entry = document.getElementById("convlstm.layers.ConvGRUCell");
  if (found && entry) {
    for (var node = entry.parentElement; node && node.tagName !== "ARTICLE"; node = node.parentElement) {
      while (node.previousElementSibling) node.parentElement.removeChild(node.previousElementSibling);
    }
    var box = found.getBoundingClientRect(), style = getComputedStyle(found.querySelector("code") || found);
    document.body.setAttribute("data-box", [box.left, box.top, box.width, box.height].map(Math.round).join(","));
    document.body.setAttribute("data-font", style.fontFamily);
    document.body.setAttribute("data-background", style.backgroundColor);
    var code = found.querySelector("code") || found;
    document.body.setAttribute("data-overflow", code.scrollWidth - code.clientWidth);
  }
  document.body.setAttribute("data-blocks", blocks.length);
});
</script>
"""


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
        "--window-size=1280,900", "--hide-scrollbars", "--virtual-time-budget=5000", *extra, page.as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium not found at /usr/bin/chromium; install Debian's chromium")
def test_api_page_screenshot_shows_equations_as_code(site: Path, tmp_path: Path) -> None:
    """A 1280x900 screenshot of the layers' API page: ConvGRUCell's gate equations are drawn as a code block (its
    own background, monospace, dark text on it), and the page's examples are highlighted sessions, not quotes."""
    iio = pytest.importorskip("imageio.v3", reason="imageio comes with the train extra: pip install -e '.[train]'")
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    page = copy / "reference" / "api" / "layers" / "index.html"
    page.write_text(page.read_text("utf-8").replace("</body>", EQUATIONS_PROBE + "</body>", 1), encoding="utf-8")

    dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    found = dict(re.findall(r'data-(box|font|background|overflow|blocks|prompts|quotes)="([^"]*)"', dom))
    assert found.get("blocks") == "1", "the equations are not one code block: " + str(found)
    assert "mono" in found["font"].lower()
    assert int(found["overflow"]) <= 0, "the equations are wider than the page's column"
    assert int(found["prompts"]) >= 1  # the Examples sections' >>> lines, highlighted
    assert found["quotes"] == "0"

    shot = tmp_path / "layers.png"
    chromium(page, tmp_path / "profile", f"--screenshot={shot}")
    pixels = iio.imread(shot)[..., :3].astype(int)
    assert pixels.shape[:2] == (900, 1280)
    left, top, width, height = (int(v) for v in found["box"].split(","))
    assert top >= 0 and top + height <= 900 and width > 300  # in the window, at the top of what is left
    block = pixels[top + 2 : top + height - 2, left + 2 : left + width - 2].reshape(-1, 3)
    colours, counts = np.unique(block, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    expected = [int(v) for v in re.findall(r"\d+", found["background"])[:3]]
    assert np.abs(background - expected).max() <= 2  # the code block's own background, as drawn
    assert not (background >= 250).all()  # not the page's white
    assert (block.sum(axis=1) < 300).mean() > 0.01  # dark glyphs on it


def test_every_image_of_every_page_exists(site: Path) -> None:
    """Chromium checks two pages; this checks the image references of all of them against the built files."""
    missing, count = [], 0
    for page in site.rglob("*.html"):
        for source in re.findall(r'<img [^>]*src="([^"]+)"', page.read_text(encoding="utf-8")):
            if source.startswith(("data:", "http:", "https:")):
                continue
            count += 1
            if not (page.parent / source).resolve().is_file():
                missing.append(f"{page.relative_to(site)}: {source}")
    assert count >= 8  # the pictures of the home page, tutorials, explanation and results
    assert missing == []
