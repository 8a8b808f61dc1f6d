"""The notebooks as a reader sees them: each notebook in nbs/ is rendered to HTML with its stored outputs (nothing is
re-executed), opened in headless Chromium, and checked for typeset equations, loaded figures and outputs of a
readable height. The stored outputs themselves must be clean: no progress-bar frames, no tracebacks or warnings, no
`Out:` that is only an object's repr (`.ci/clean_outputs.py` removes the first and the last), no paths into a temporary
folder (`/tmp/...`: print them relative to it).

Pages are rendered without `In [ ]:` / `Out[ ]:` prompts, as Quarto renders the documentation site: `nbdev-clean`
resets every execution count (nbdev 3 has no setting that keeps them), so prompts could only show empty brackets.

MathJax comes from Debian's `libjs-mathjax` and the browser from Debian's `chromium` + `chromium-driver`, driven by
selenium; the browser has no network, so a page that needs the internet to show its maths or figures fails here.
Without these the tests skip. Screenshots of a few pages go to pytest's tmp dir, and also to $FSAD_SCREENSHOTS when set:
`STEM_top.png`, `_math`, `_figure`, `_last_figure` (the viewport around them) and, for the figures SHOTS names, `STEM_NAME.png`
(the figure alone), e.g. `23_deploy_overlay.png`, the picture `fsad predict` writes per image.
"""
import ast as ast_mod
import json
import os
import re
import runpy
import shutil
from pathlib import Path

import pytest
from nbformat import ValidationError

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")
MATHJAX_URL = MATHJAX.as_uri() + "?config=TeX-AMS_CHTML-full,Safe"   # nbconvert's default config, served locally
# pages that get screenshots (top, first equation, first and last figure), and figures shot by the code that draws them
SHOTS = {"05_frequency": {}, "10_knn": {}, "12_dfd": {},
         "23_deploy": {"overlay": 'ShowPNG(filename=str(tmp/"tiles"/"heatmaps"'},    # predict's picture: image | map
         "11_regad": {"gallery": "heatmap_gallery(x_te", "registration": "moved = warp("},
         "14_uniad": {"gallery": "heatmap_gallery(x_te"}}
MAX_OUTPUT_PX = 1600                                                      # the tallest single output a page may show
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif")                    # rendered as <img> by nbconvert


def _browser_paths():
    "The Chromium and chromedriver executables, or a reason to skip."
    chrome = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
                                                   if Path(p).exists()), None)
    if chrome is None or driver is None: return None, None, "chromium or chromedriver not installed (apt-get install chromium chromium-driver)"
    return chrome, driver, None


# ---- what the notebook promises (from its JSON) --------------------------------------------------------------------

_CLEAN = runpy.run_path(str(ROOT / ".ci" / "clean_outputs.py"))          # the cleaner's own rules: one definition
_NOISE = re.compile(r"Traceback \(most recent call last\)|\w*Warning\b")
_TMP_PATH = re.compile(r"(?<![\w.~])/tmp/[^\s'\"]*")                      # a temporary folder's path: differs every run


def _output_text(o) -> str:
    if o.get("output_type") == "stream": return "".join(o["text"])
    if o.get("output_type") == "error": return "Traceback (most recent call last) " + o.get("ename", "")
    return "".join("".join(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))


def noise(nb_path) -> list[str]:
    "What a reader should not see in a notebook's stored outputs: 'cell N: what'."
    nb, found = json.loads(nb_path.read_text()), []
    for i, c in enumerate(nb["cells"]):
        for o in c.get("outputs", []):
            text = _output_text(o)
            if _CLEAN["BAR"].search(text): found.append(f"cell {i}: progress-bar frames")
            if m := _NOISE.search(text): found.append(f"cell {i}: {m.group(0)!r} in an output")
            if m := _TMP_PATH.search(text): found.append(f"cell {i}: temporary path {m.group(0)!r} in an output")
            if o.get("output_type") == "execute_result" and _CLEAN["clean_output"](json.loads(json.dumps(o))) is None:
                found.append(f"cell {i}: Out: {text.strip()[:60]}")
    return found

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
    return HTMLExporter(mathjax_url=MATHJAX_URL, exclude_input_prompt=True, exclude_output_prompt=True)   # as Quarto


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
  const outs = [...document.querySelectorAll('.jp-OutputArea-output')].map(e => Math.round(e.getBoundingClientRect().height));
  const prompts = [...document.querySelectorAll('.jp-InputPrompt, .jp-OutputPrompt')].filter(e => e.textContent.trim()).length;
  const imgs = [...document.images].map(i => ({src: i.src.slice(0, 60), ok: i.complete && i.naturalWidth > 0 && i.naturalHeight > 0,
                                               output: !!i.closest('.jp-OutputArea-output')}));
  done({mathjax: true, rendered, sources, errors, raw, imgs, outs, prompts});
}
if (!window.MathJax || !MathJax.Hub) { done({mathjax: false}); }
// the hook must return nothing: MathJax's startup would wait on a returned callback, and that one waits on the startup
else { MathJax.Hub.Register.StartupHook("End", () => { MathJax.Hub.Queue(inspect); }); }
"""


def _figure_of(browser, code:str):
    "The first figure drawn by the code cell whose source contains `code`, or None."
    for cell in browser.find_elements("css selector", ".jp-CodeCell"):
        if code in cell.find_element("css selector", ".jp-InputArea").text:
            imgs = cell.find_elements("css selector", ".jp-OutputArea-output img")
            return imgs[0] if imgs else None


def screenshot(browser, stem, dirs, figures=None):
    "Viewport-sized PNGs of the top of the page, the first equation, the first and last figure; `figures` {name: code}: "
    "each figure alone, as the page shows it."
    targets = {"top": (None, 0), "math": ("div.MJXc-display, span.MathJax_CHTML", 0), "figure": (".jp-OutputArea-output img", 0),
               "last_figure": (".jp-OutputArea-output img", -1)}
    for name, (css, k) in targets.items():
        el = browser.find_elements("css selector", css)[k:][:1] if css else []
        if css and not el: continue
        browser.execute_script("arguments[0] ? arguments[0].scrollIntoView({block: 'center'}) : window.scrollTo(0, 0)",
                               el[0] if el else None)
        png = browser.get_screenshot_as_png()
        for d in dirs: (d / f"{stem}_{name}.png").write_bytes(png)
    for name, code in (figures or {}).items():
        el = _figure_of(browser, code)
        assert el is not None, f"{stem}: no figure drawn by the cell with {code!r}"
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        png = el.screenshot_as_png
        for d in dirs: (d / f"{stem}_{name}.png").write_bytes(png)


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_stored_outputs_are_clean(nb):
    found = noise(nb)
    assert not found, f"{nb.name}: {found[:8]} (`python .ci/clean_outputs.py {nb.relative_to(ROOT)}` removes bars and bare reprs)"


def test_noise_finds_temporary_paths(tmp_path):
    "A temp folder's path in any stored output is reported; a URL or a path under a data home is not."
    def nb(text):
        cell = {"cell_type": "code", "source": [], "metadata": {}, "outputs": [{"output_type": "stream", "name": "stdout", "text": [text]}]}
        (tmp_path / "x.ipynb").write_text(json.dumps({"cells": [cell]}))
        return noise(tmp_path / "x.ipynb")
    assert nb("results in /tmp/tmpcmeudp2x/res\n") == ["cell 0: temporary path '/tmp/tmpcmeudp2x/res' in an output"]
    assert nb("Config(textures='/tmp/tex')\n")
    assert nb("gallery: res/synthetic/gallery.png; see https://example.org/tmp/x and ~/data/tmp/y\n") == []


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
    assert r["prompts"] == 0, f"{nb.name}: the page shows {r['prompts']} In/Out prompts"
    tall = [h for h in r["outs"] if h > MAX_OUTPUT_PX]
    assert not tall, f"{nb.name}: outputs {tall} px tall (limit {MAX_OUTPUT_PX}): shorten the output or split it"
    n_out = sum(i["output"] for i in r["imgs"])
    assert n_out >= n_img, f"{nb.name}: {n_img} image outputs in the notebook, {n_out} figures on the page"
    if nb.stem in SHOTS: screenshot(browser, nb.stem, shot_dirs, SHOTS[nb.stem])


def test_cleaner_keeps_results_and_drops_noise():
    "`.ci/clean_outputs.py`: a redrawn bar leaves the line a terminal ends with; a table or a result stays as it is."
    bar = lambda i: f" |{'█' * 4 * i}{'-' * (40 - 4 * i)}| {10 * i:.2f}% [{i}/10 00:0{i}<00:00]"
    text = "█\r" + "\r".join(bar(i) for i in range(11)) + "\r" + " " * 60 + "\rK=4: image AUROC 0.684\n| a | b |\n|---|---|\n"
    out = _CLEAN["clean_output"]({"output_type": "stream", "name": "stdout", "text": text})
    assert out["text"] == "K=4: image AUROC 0.684\n| a | b |\n|---|---|\n"
    keep = {"output_type": "stream", "name": "stdout", "text": ["| method | K |\n", "|---|---|\n"]}
    assert _CLEAN["clean_output"](json.loads(json.dumps(keep))) == keep
    gen = {"output_type": "execute_result", "data": {"text/plain": ["<torch._C.Generator at 0x7f3a2c>"]}, "metadata": {}}
    assert _CLEAN["clean_output"](gen) is None
    html_bar = {"output_type": "display_data", "data": {"text/html": ["<progress value='3' max='10'></progress>"]}, "metadata": {}}
    assert _CLEAN["clean_output"](html_bar) is None


def _docs_time_cells(nb_path):
    "Cells the docs build (nbdev-proc-nbs) executes on its own: exported ones and any cell holding an import."
    import ast
    for i, c in enumerate(json.loads(Path(nb_path).read_text())["cells"]):
        if c["cell_type"] != "code": continue
        src = "".join(c["source"]); dirs = {l[3:].split(":")[0].strip() for l in src.splitlines() if l.startswith("#|")}
        if dirs & {"export", "exports", "exporti", "exec_doc", "default_exp"} or "eval: false" in src: continue
        try: tree = ast.parse("\n".join(l for l in src.splitlines() if not l.startswith(("#|", "%", "!"))))
        except SyntaxError: continue
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)): yield i, src, tree


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_docs_build_runs_only_imports(nb):
    "A test cell that also imports is run by the docs build without the cells before it: keep imports in their own cells."
    mixed = [i for i, src, tree in _docs_time_cells(nb) if nb.name != "index.ipynb"
             and any(not isinstance(n, (ast_mod.Import, ast_mod.ImportFrom)) for n in tree.body)]
    assert not mixed, f"{nb.name}: cells {mixed} mix imports with other code (move the imports to an import cell)"
