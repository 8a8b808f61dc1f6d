"""README.md is generated from nbs/index.ipynb (`python .ci/readme.py`); it must not drift from it."""
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_matches_index():
    render = runpy.run_path(str(ROOT/".ci"/"readme.py"))["render"]
    assert (ROOT/"README.md").read_text() == render(), "README.md is stale: run `python .ci/readme.py`"


def test_readme_names_datasets_not_paths():
    "Commands name datasets (the data home finds them), never a folder beside this repository."
    import re
    text = (ROOT/"README.md").read_text()
    assert not re.search(r"\.\./+shared|shared/data", text)


def test_readme_is_short_with_glossary():
    "A README a reader finishes: at most 150 lines, one install section, and the five terms its tables use."
    text = (ROOT/"README.md").read_text()
    assert len(text.splitlines()) <= 150, f"README.md has {len(text.splitlines())} lines"
    assert text.count("\n## Install") == 1
    for term in ("**AUROC**", "50 is chance", "**pixel AUROC**", "**AUPRO**", "**K-shot support draw**", "**leave-one-out meta-training**"):
        assert term in text, term
