"""Run every notebook in nbs/ through nbdev's test machinery, one pytest test per notebook.

Cells flagged with the project's `tst_flags` (`slow`, `cuda`) are skipped, exactly as `nbdev-test` skips them;
set FSAD_TEST_FLAGS="slow" (or "slow cuda") to run them too.
"""
import os
from pathlib import Path

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))


@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_notebook(nb, monkeypatch):
    cfg = get_config(ROOT)
    skip = cfg.tst_flags.split() if isinstance(cfg.tst_flags, str) else list(cfg.tst_flags)
    force = os.environ.get("FSAD_TEST_FLAGS", "").split()
    monkeypatch.chdir(nb.parent)
    ok, secs = run_notebook(nb, skip_flags=skip, force_flags=force, basepath=str(ROOT), showerr=True)
    assert ok, f"{nb.name} failed (see the traceback above)"
