"""The README's main job, `fsad demo`, end to end (one round instead of three to keep CI short)."""
import subprocess, sys
from pathlib import Path


def test_demo(tmp_path):
    cmd = [sys.executable, "-c", "from fsad_nb.cli import main; main()", "demo", "--rounds", "1",
           "--out", str(tmp_path/"demo"), "--data", str(tmp_path/"data"), "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    table = (tmp_path/"demo"/"summary.md").read_text()
    assert "elpv_mono" in table and "elpv_poly" in table
    for c in ("elpv_mono", "elpv_poly"):
        png = tmp_path/"demo"/f"gallery_{c}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        auroc = float(next(l for l in table.splitlines() if f"| {c} |" in l).split("|")[4].split("±")[0])
        assert auroc > 60, table  # real ImageNet features separate defective cells far above chance
