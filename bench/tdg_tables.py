"""Tables of the TDG runs: Fashion-MNIST one-class AUROC per class (and the Table-1 ablations on the classes they
ran), and magnetic_tile beside patch-kNN on the same support rounds.

    python bench/tdg_tables.py        # reads bench/results/tdg_oneclass_*.json and results/, writes bench/results/tdg_tables.md
"""
import argparse, json, sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsad_nb.core import save_json, atomic_path                           # noqa: E402
from fsad_nb.datasets import FASHION_MNIST_CLASSES                          # noqa: E402
sys.path.insert(0, str(ROOT/"bench"))
from dfd_tables import NAMES, method_table                                 # noqa: E402

ABLATIONS = {"use_generator_False": "(a) no generator", "use_transforms_False": "(b) no transformations",
             "transforms_as_augmentation_True": "(c) transformations as augmentation",
             "single_scale_32": "(d) single scale (32 px)"}


MAIN = ("k5", "k5_b", "k1_k10", "k1_k10_b")   # full-model runs (_b: the same commands split over a second process), merged


def load_rounds(res, tags) -> dict:
    "{(class, K): [AUROC per round, by round]} merged over the result files of `tags` that exist; a round in two files counts once."
    by = {}
    for tag in tags:
        p = res/f"tdg_oneclass_cpu_cpu_{tag}.json"
        if p.exists():
            for r in json.loads(p.read_text())["rounds_detail"]: by[r["normal_class"], r["K"], r["round"]] = r["auroc"]
    out = {}
    for (c, K, r) in sorted(by): out.setdefault((c, K), []).append(by[c, K, r])
    return out


def oneclass_table(full) -> str:
    "Mean ± std AUROC (%) over rounds per class (columns) and K (rows), with the mean over classes."
    classes = sorted({c for c, _ in full})
    lines = ["| K | rounds | " + " | ".join(f"{c} {FASHION_MNIST_CLASSES[c]}" for c in classes) + " | mean of classes |",
             "|---|---|" + "---|" * (len(classes) + 1)]
    for K in sorted({k for _, k in full}):
        cs = [c for c in classes if (c, K) in full]
        n = sorted({len(full[c, K]) for c in cs})
        cells = [f"{100 * np.mean(full[c, K]):.1f} ± {100 * np.std(full[c, K]):.1f}" if (c, K) in full else "-" for c in classes]
        lines.append(f"| {K} | {'–'.join(map(str, (n[0], n[-1]) if len(n) > 1 else n))} | " + " | ".join(cells)
                     + f" | {100 * np.mean([np.mean(full[c, K]) for c in cs]):.1f}" + ("" if len(cs) == len(classes) else f" ({len(cs)} classes)") + " |")
    return "\n".join(lines) + "\n"


def ablation_table(res, full, K=5) -> tuple[str, dict]:
    "Table 1's variants beside the full model, on the classes and the rounds the variants ran (paired draws)."
    runs = {tag: d for tag in ABLATIONS if (d := load_rounds(res, [f"k{K}_{tag}"]))}
    if not runs: return "", {}
    cs = sorted(set.intersection(*({c for c, k in d if k == K} for d in runs.values())))   # classes every variant ran
    n = {c: min(len(d[c, K]) for d in runs.values() if (c, K) in d) for c in cs}        # rounds the variants have
    if not all((c, K) in full and len(full[c, K]) >= n[c] for c in cs): return "", {}
    f = [np.mean(full[c, K][:n[c]]) for c in cs]
    abl = ["| variant (Table 1) | classes | rounds | AUROC per class | mean | Δ vs full |", "|---|---|---|---|---|---|",
           f"| full TDG | {', '.join(map(str, cs))} | {max(n.values())} | " + " / ".join(f"{100 * x:.1f}" for x in f)
           + f" | {100 * np.mean(f):.1f} | 0 |"]
    for tag, d in runs.items():
        v = [np.mean(d[c, K][:n[c]]) for c in cs]
        abl.append(f"| {ABLATIONS[tag]} | {', '.join(map(str, cs))} | {max(n.values())} | " + " / ".join(f"{100 * x:.1f}" for x in v)
                   + f" | {100 * np.mean(v):.1f} | {100 * (np.mean(v) - np.mean(f)):+.1f} |")
    return "\n".join(abl) + "\n", {tag: {int(c): d[c, K] for c in cs} for tag, d in runs.items()}


def magnetic_tile_table(results) -> tuple[str, dict]:
    "TDG beside patch-kNN on magnetic_tile, on the rounds TDG has (the DFD tables' helper)."
    NAMES["tdg"] = "TDG (cpu preset)"
    return method_table(results, "magnetic_tile", (1, 5, 10), [("tdg", "tdg_cpu"), ("knn", "knn_lite0")], True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT/"results"))
    p.add_argument("--bench", default=str(ROOT/"bench"/"results"))
    a = p.parse_args(argv)
    bench, results = Path(a.bench), Path(a.results)
    full = load_rounds(bench, MAIN)
    t1, (t0, d0) = oneclass_table(full), ablation_table(bench, full)
    t2, d2 = magnetic_tile_table(results)
    text = ("# TDG (cpu preset: 4 scales 16-32 px, 16 channels, 100 iterations per scale, 8 transformations per step)\n\n"
            "## Fashion-MNIST one-class, image AUROC (%), mean ± std over rounds\n\n" + t1
            + "\n## Table-1 ablation, Fashion-MNIST one-class, K=5\n\n" + t0 + "\n## magnetic_tile\n\n" + t2)
    print(text)
    with atomic_path(bench/"tdg_tables.md") as tmp: Path(tmp).write_text(text)
    save_json(bench/"tdg_tables.json", {"fashion_mnist": {f"{c}_k{K}": v for (c, K), v in sorted(full.items())},
                                         "fashion_mnist_ablation_k5": d0, "magnetic_tile": d2})


if __name__ == "__main__":
    main()
