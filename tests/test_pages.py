"""The notebooks as a reader sees them: each notebook in nbs/ is rendered to HTML with its stored outputs (nothing is
re-executed), opened in headless Chromium, and checked for typeset equations and loaded figures.

MathJax comes from Debian's `libjs-mathjax` and the browser from Debian's `chromium` + `chromium-driver`, driven by
selenium; the browser has no network, so a page that needs the internet to show its maths or figures fails here.
Without these the tests skip. Screenshots of a few pages go to pytest's tmp dir, and also to $FSAD_SCREENSHOTS when set.
"""
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from nbformat import ValidationError

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")
MATHJAX_URL = MATHJAX.as_uri() + "?config=TeX-AMS_CHTML-full,Safe"   # nbconvert's default config, served locally
SHOTS = ("05_frequency", "10_knn", "12_dfd")                              # pages that get screenshots
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif")                    # rendered as <img> by nbconvert


def _browser_paths():
    "The Chromium and chromedriver executables, or a reason to skip."
    chrome = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
                                                   if Path(p).exists()), None)
    if chrome is None or driver is None: return None, None, "chromium or chromedriver not installed (apt-get install chromium chromium-driver)"
    return chrome, driver, None


# ---- what the notebook promises (from its JSON) --------------------------------------------------------------------

_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)                          # code fences and spans hold no maths
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$|\\begin\{", re.S)


def expected(nb_path):
    "(has LaTeX in its markdown, number of image outputs) of a notebook."
    nb = json.loads(nb_path.read_text())
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    n_img = sum(any(m in o.get("data", {}) for m in IMAGE_MIMES)
                for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    return bool(_MATH.search(_CODE.sub("", md))), n_img


# ---- rendering and the browser --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "A folder for the rendered pages, with nbs/images beside them so that relative links resolve."
    if not MATHJAX.exists(): pytest.skip(f"MathJax not found at {MATHJAX} (apt-get install libjs-mathjax)")
    pytest.importorskip("nbconvert")
    d = tmp_path_factory.mktemp("pages")
    if (ROOT / "nbs" / "images").exists(): (d / "images").symlink_to(ROOT / "nbs" / "images", target_is_directory=True)
    return d


@pytest.fixture(scope="module")
def exporter(site):
    from nbconvert import HTMLExporter
    return HTMLExporter(mathjax_url=MATHJAX_URL)


@pytest.fixture(scope="module")
def browser(site):
    "One headless Chromium for all pages of this worker; no network, local files may load local files (MathJax's fonts)."
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install selenium)")
    chrome, driver, why = _browser_paths()
    if why: pytest.skip(why)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1024",
              "--allow-file-access-from-files", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
              "--disable-extensions", "--no-first-run", "--hide-scrollbars"):
        opts.add_argument(a)
    b = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver))
    b.set_page_load_timeout(60); b.set_script_timeout(30)
    yield b
    b.quit()


@pytest.fixture(scope="module")
def shot_dirs(tmp_path_factory):
    dirs = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("FSAD_SCREENSHOTS"): dirs.append(Path(os.environ["FSAD_SCREENSHOTS"]))
    for d in dirs: d.mkdir(parents=True, exist_ok=True)
    return dirs


# Runs once MathJax has typeset the page (its "End" startup hook fires at once if that has already happened).
_INSPECT = r"""
const done = arguments[arguments.length - 1];
function inspect() {
  const rendered = document.querySelectorAll('span.MathJax_CHTML').length;
  const sources = document.querySelectorAll('script[type^="math/tex"]').length;
  const errors = [];    // TeX not typeset, or typeset as an error: noErrors shows the source, noUndefined a red macro name
  for (const s of document.querySelectorAll('script[type^="math/tex"]')) {
    const f = document.getElementById(s.id + '-Frame'), mml = f ? f.getAttribute('data-mathml') || '' : '';
    if (!f || /<merror|mathcolor="red"/.test(mml) || f.querySelector('.mjx-merror')) errors.push(s.textContent.slice(0, 80));
  }
  const raw = [];
  for (const md of document.querySelectorAll('.jp-RenderedMarkdown')) {
    const c = md.cloneNode(true);
    c.querySelectorAll('code, pre, script, .MathJax_CHTML, .MJX_Assistive_MathML, .MathJax_Preview').forEach(e => e.remove());
    for (const m of c.textContent.matchAll(/\$\$|\$[^$\s][^$]*\$|\\\(|\\\[|\\begin\{/g)) raw.push(m[0].slice(0, 80));
  }
  const imgs = [...document.images].map(i => ({src: i.src.slice(0, 60), ok: i.complete && i.naturalWidth > 0 && i.naturalHeight > 0,
                                               output: !!i.closest('.jp-OutputArea-output')}));
  done({mathjax: true, rendered, sources, errors, raw, imgs});
}
if (!window.MathJax || !MathJax.Hub) { done({mathjax: false}); }
// the hook must return nothing: MathJax's startup would wait on a returned callback, and that one waits on the startup
else { MathJax.Hub.Register.StartupHook("End", () => { MathJax.Hub.Queue(inspect); }); }
"""


def screenshot(browser, stem, dirs):
    "The top of the page, the first equation and the first figure, each a viewport-sized PNG."
    targets = {"top": None, "math": "div.MJXc-display, span.MathJax_CHTML", "figure": ".jp-OutputArea-output img"}
    for name, css in targets.items():
        el = browser.find_elements("css selector", css)[:1] if css else []
        if css and not el: continue
        browser.execute_script("arguments[0] ? arguments[0].scrollIntoView({block: 'center'}) : window.scrollTo(0, 0)",
                               el[0] if el else None)
        png = browser.get_screenshot_as_png()
        for d in dirs: (d / f"{stem}_{name}.png").write_bytes(png)


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_page(nb, site, exporter, browser, shot_dirs):
    has_math, n_img = expected(nb)
    try: html, _ = exporter.from_filename(str(nb))
    except ValidationError as e:                          # e.g. execnb's float `execution.total` in cell metadata
        pytest.fail(f"{nb.name} is not a valid notebook: {e.message} at {'/'.join(map(str, e.absolute_path))}; "
                    "`nbdev-clean` strips stray cell metadata", pytrace=False)
    page = site / f"{nb.stem}.html"
    page.write_text(html, encoding="utf-8")
    browser.get(page.as_uri())
    r = browser.execute_async_script(_INSPECT)
    assert r["mathjax"], f"{nb.name}: MathJax did not load from {MATHJAX_URL}"
    assert not r["errors"], f"{nb.name}: MathJax errors {r['errors']}"
    assert not r["raw"], f"{nb.name}: LaTeX left untypeset in the text: {r['raw'][:5]}"
    if has_math:
        assert r["rendered"] > 0, f"{nb.name}: the markdown has LaTeX but the page has no typeset maths"
        assert r["rendered"] == r["sources"], f"{nb.name}: {r['sources']} equations, {r['rendered']} typeset"
    broken = [i["src"] for i in r["imgs"] if not i["ok"]]
    assert not broken, f"{nb.name}: images that did not load: {broken}"
    n_out = sum(i["output"] for i in r["imgs"])
    assert n_out >= n_img, f"{nb.name}: {n_img} image outputs in the notebook, {n_out} figures on the page"
    if nb.stem in SHOTS: screenshot(browser, nb.stem, shot_dirs)
