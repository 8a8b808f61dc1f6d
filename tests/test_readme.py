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
