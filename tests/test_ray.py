"""A sweep on a local Ray with two workers writes the same round files as the plain loop."""
import time
import pytest
import torch
from fsad_nb.core import load_json
from fsad_nb.data import make_synthetic_category
from fsad_nb.protocol import run_category, METRICS

ray = pytest.importorskip("ray")


def test_ray_sweep_equals_sequential(tmp_path):
    root = tmp_path/"data"
    make_synthetic_category(root, "synthetic", n_train=8, n_test_good=4, n_test_defect=4, size=48, seed=0)
    kw = dict(shots=(1, 2), rounds=3, image_size=48, progress=False)        # ImageNet weights: the same detector anywhere
    threads = torch.get_num_threads(); torch.set_num_threads(1)             # as a Ray worker (1 CPU): same float sums
    t0 = time.perf_counter(); a = run_category("knn", root, "synthetic", tmp_path/"seq", **kw); t_seq = time.perf_counter() - t0
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        b = run_category("knn", root, "synthetic", tmp_path/"ray", engine="ray", workers=2, **kw)
        t_ray = time.perf_counter() - t0
    finally: ray.shutdown()
    files = sorted((tmp_path/"seq"/"synthetic").rglob("round*.json"))
    assert len(files) == 6
    for f in files:
        x, y = load_json(f), load_json(tmp_path/"ray"/f.relative_to(tmp_path/"seq"))
        assert {k: x[k] for k in METRICS + ("support", "K", "round")} == {k: y[k] for k in METRICS + ("support", "K", "round")}
    for K in (1, 2):
        for m in METRICS: assert a["by_shots"][K][m] == b["by_shots"][K][m]
    print(f"sequential {t_seq:.1f} s, ray (2 workers, incl. start-up) {t_ray:.1f} s")
