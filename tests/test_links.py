"""Links a reader follows: every link to the documentation site names a page that nbdev builds, and every relative
link or image points at a file of the repository.

nbdev names each page after its notebook file (`nbdev.config.nbpath2html`: `11_regad.ipynb` -> `regad.html`, the
number and the module path dropped), so the pages are derived here from the notebooks with that same function, and
the site's address from nbdev's configuration (`doc_host` + `doc_baseurl`). Checked: README.md, and in every notebook
the markdown cells and the Markdown outputs (the README's tables are such outputs of index.ipynb).
"""
import json
import re
from pathlib import Path

import pytest

nbdev_config = pytest.importorskip("nbdev.config", reason="nbdev not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if not any(s.startswith((".", "_")) for s in p.relative_to(NBS).parts))
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")     # [text](target) and ![alt](target)


def site() -> str:
    "The documentation site's address, ending in '/'."
    cfg = nbdev_config.get_config(ROOT)
    return cfg.doc_host.rstrip("/") + "/" + cfg.doc_baseurl.strip("/") + "/"


def pages() -> set[str]:
    "The pages nbdev builds, as paths below the site's address ('' is the home page)."
    names = {nbdev_config.nbpath2html(p.relative_to(NBS)).as_posix() for p in NOTEBOOKS}
    return names | {""}


def texts(path: Path) -> str:
    "What a reader sees of a file: the README as it is; a notebook's markdown cells and Markdown outputs."
    if path.suffix != ".ipynb": return path.read_text()
    nb, parts = json.loads(path.read_text()), []
    for c in nb["cells"]:
        if c["cell_type"] == "markdown": parts.append("".join(c["source"]))
        for o in c.get("outputs", []): parts.append("".join(o.get("data", {}).get("text/markdown", "")))
    return "\n".join(parts)


def site_links(text: str) -> list[str]:
    "The paths below the site's address that `text` links to, without #anchors or ?queries."
    return [re.split(r"[#?]", m)[0] for m in re.findall(re.escape(site()) + r"([^\s)\]>\"'`]*)", text)]


def test_pages_follow_nbdev_names():
    "The mapping the links rely on: a numbered notebook's page drops the number; no page is named after a module path."
    ps = pages()
    assert {"regad.html", "knn.html", "dfd.html", "tdg.html", "uniad.html", "adversarial.html", "deploy.html"} <= ps
    assert "methods.regad.html" not in ps and "11_regad.html" not in ps
    assert site() == "https://fsad-nb.github.io/fsad_nb/"


@pytest.mark.parametrize("path", [ROOT / "README.md", *NOTEBOOKS], ids=lambda p: p.name)
def test_site_links_name_built_pages(path):
    dead = sorted({p for p in site_links(texts(path)) if p not in pages()})
    assert not dead, f"{path.name}: links to pages the docs build does not make: {dead} (pages: {sorted(pages())})"


@pytest.mark.parametrize("path", [ROOT / "README.md", *NOTEBOOKS], ids=lambda p: p.name)
def test_relative_links_exist(path):
    "Relative links and images resolve: from the repository root in the README, from nbs/ in a notebook."
    base, missing = (ROOT if path.suffix == ".md" else path.parent), []
    for target in _LINK.findall(texts(path)):
        if re.match(r"[a-z]+:|#|mailto:", target): continue
        f = target.split("#")[0]
        if path.suffix == ".ipynb" and f.endswith(".html"):          # a page of the site, named as nbdev names it
            if f not in pages(): missing.append(target)
        elif not (base / f).exists(): missing.append(target)
    assert not missing, f"{path.name}: links to files that do not exist: {missing}"
