"""The documentation site builds strictly, every public name has its API entry, and the pages render in Chromium.

The site is built once per test session (``mkdocs build --strict`` into a temporary folder, about as long as
``make docs``); without the docs extra (``pip install -e '.[docs]'``) these tests are skipped.
"""

import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The site's own settings (validation, strict) turn a link to a missing page into a failed build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](tutorials/no-such-page.md).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(f"INHERIT: {ROOT / 'mkdocs.yml'}\ndocs_dir: {docs}\nnav:\n  - Home: index.md\n")
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
