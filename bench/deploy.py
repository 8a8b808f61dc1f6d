"""Deployment figures: the label-free threshold beside the F1-optimal one, export sizes, throughput and parity.

    python bench/deploy.py                      # both parts, 224 px, CPU
    python bench/deploy.py --part threshold     # only the threshold study (patch-kNN, K=4, 5 rounds, 3 categories)
    python bench/deploy.py --part export        # only sizes, throughput and parity of every exportable method

Writes bench/results/deploy_threshold.json and bench/results/deploy_bench.json and prints both as JSON.

The threshold study fits patch-kNN on the protocol's support draws (seed 0) of magnetic_tile, elpv_mono and
elpv_poly with `fit_with_threshold` (exactly what `fit_model` runs) and scores the whole test sets. The export
part fits each method on magnetic_tile's round-0 draw at K=4 (RegAD without meta-training; DFD and SimpleNet with a
short training, `--short`: this measures the graphs, not accuracy), exports ONNX and TorchScript, and times
`predict` in PyTorch, onnxruntime and TorchScript on batches of real test tiles.
"""
import argparse, json, platform, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch

from fsad_nb.core import save_json, set_seed
from fsad_nb.data import MVTecLayout, stack_split
from fsad_nb.datasets import dataset
from fsad_nb.deploy import (fit_model, load_model, export_model, export_gap, graph_module, threshold_study, study_table,
                            EXPORT_FORMATS, OPSET)

RESULTS = Path(__file__).parent/"results"
CATEGORIES = (("magnetic_tile", "magnetic_tile"), ("elpv", "elpv_mono"), ("elpv", "elpv_poly"))
SHORT = {"dfd": {"n_augment": 8, "epochs": 2}, "simplenet": {"n_augment": 2, "epochs": 4}}


def category_root(name:str, category:str) -> Path:
    "The folder holding `category` for a dataset of the data home."
    d = dataset(name)
    return d.parent if d.name == category else d


def threshold_part(a) -> dict:
    rows, t0 = [], time.time()
    for name, cat in CATEGORIES:
        rows += threshold_study("knn", category_root(name, cat), cat, shots=a.shots, rounds=a.rounds, image_size=a.image_size,
                                batch_size=a.batch_size, progress=sys.stdout.isatty())
        print(f"{cat}: done after {time.time() - t0:.0f}s", flush=True)
    res = {"method": "knn", "K": a.shots, "rounds": a.rounds, "image_size": a.image_size,
           "rule": "image threshold = max of the K leave-one-out scores of the support images",
           "command": "python bench/deploy.py --part threshold", "table": study_table(rows), "rows": rows,
           "seconds": round(time.time() - t0)}
    save_json(RESULTS/"deploy_threshold.json", res)
    print(res["table"])
    return res


def images_per_second(score, x, repeats:int, warmup:int=3) -> float:
    "Median over `repeats` timed calls of images per second, after `warmup` calls (TorchScript optimises its graph during"
    "its first calls); every call gets a fresh copy of `x`, so no cache helps, and the median resists a busy shared CPU."
    for _ in range(warmup): score(x.clone())
    rates = []
    for _ in range(repeats):
        b = x.clone(); t0 = time.perf_counter(); score(b); rates.append(len(x) / (time.perf_counter() - t0))
    return float(np.median(rates))


def export_part(a) -> dict:
    root = category_root("magnetic_tile", "magnetic_tile")
    test = MVTecLayout(root, "magnetic_tile", "test", size=a.image_size)
    x = stack_split(test, np.linspace(0, len(test) - 1, a.batch_size).astype(int))[0]    # good and defective tiles
    tmp, out = Path(tempfile.mkdtemp()), {}
    for method in a.methods:
        t0 = time.time()
        set_seed(0)
        f = fit_model(method, root/"magnetic_tile", tmp/f"{method}.fsad", shots=a.shots, round=0, image_size=a.image_size,
                      options=SHORT.get(method), threshold="holdout" if method == "knn" else 1.0, progress=False)
        fit_s = time.time() - t0
        m = load_model(f, device="cpu")
        g = graph_module(m.detector)
        files, secs = {}, {}
        for fmt, suffix in EXPORT_FORMATS.items():
            t1 = time.time(); files[fmt] = export_model(f, fmt, tmp/f"{method}{suffix}"); secs[fmt] = time.time() - t1
        runners = {"pytorch": m, **{fmt: load_model(p) for fmt, p in files.items()}}
        out[method] = {
            "options": SHORT.get(method, {}), "fit_s": round(fit_s, 1), "export_s": {k: round(v, 1) for k, v in secs.items()},
            "size_mb": {"fsad": f.stat().st_size / 1e6, **{fmt: p.stat().st_size / 1e6 for fmt, p in files.items()}},
            "img_per_s": {k: images_per_second(lambda b: r.score(b, a.batch_size), x, a.repeats) for k, r in runners.items()},
            "parity": {fmt: export_gap(runners[fmt], g, x) for fmt in files}}
        print(method, json.dumps(out[method]), flush=True)
    res = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "opset": OPSET, "batch_size": a.batch_size, "image_size": a.image_size, "K": a.shots,
           "parity_images": "magnetic_tile test tiles spread over the test set", "command": "python bench/deploy.py --part export",
           "methods": out}
    import onnxruntime; res["onnxruntime"] = onnxruntime.__version__
    save_json(RESULTS/"deploy_bench.json", res)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("threshold", "export", "all"), default="all")
    p.add_argument("--shots", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--methods", nargs="+", default=["knn", "regad", "simplenet", "dfd"])
    a = p.parse_args(argv)
    res = {}
    if a.part in ("threshold", "all"): res["threshold"] = threshold_part(a)
    if a.part in ("export", "all"): res["export"] = export_part(a)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in res.items()}, indent=2, default=str))
    return res


if __name__ == "__main__":
    main()
