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
from fsad_nb.data import FASHION_MNIST_CLASSES                             # noqa: E402
sys.path.insert(0, str(ROOT/"bench"))
from dfd_tables import NAMES, method_table                                 # noqa: E402

ABLATIONS = {"": "full TDG", "use_generator_False": "(a) no generator", "use_transforms_False": "(b) no transformations",
             "transforms_as_augmentation_True": "(c) transformations as augmentation",
             "single_scale_32": "(d) single scale (32 px)"}


def per_class(detail) -> dict:
    "{(class, K): [AUROC per round]} of a bench/tdg_oneclass.py result."
    out = {}
    for r in detail: out.setdefault((r["normal_class"], r["K"]), []).append(r["auroc"])
    return out


def oneclass_tables(res, K=5) -> tuple[str, dict]:
    main = res/f"tdg_oneclass_cpu_cpu_k{K}.json"
    if not main.exists(): return "", {}
    full = per_class(json.loads(main.read_text())["rounds_detail"])
    classes = sorted(c for c, k in full if k == K)
    lines = ["| normal class | " + " | ".join(f"{c} {FASHION_MNIST_CLASSES[c]}" for c in classes) + " | mean |",
             "|---|" + "---|" * (len(classes) + 1),
             "| TDG | " + " | ".join(f"{100 * np.mean(full[c, K]):.1f}" for c in classes)
             + f" | {100 * np.mean([np.mean(full[c, K]) for c in classes]):.1f} |"]
    data = {"full": {int(c): full[c, K] for c in classes}}
    abl = ["| variant (Table 1) | classes | AUROC per class | mean | Δ vs full, same classes |", "|---|---|---|---|---|"]
    for tag, name in ABLATIONS.items():
        p = res/f"tdg_oneclass_cpu_cpu_k{K}_{tag}.json" if tag else None
        if p is not None and not p.exists(): continue
        d = per_class(json.loads(p.read_text())["rounds_detail"]) if p else None
        cs = sorted(c for c, k in d if k == K) if d else [0, 1]
        src = d if d else full
        if not all((c, K) in src and (c, K) in full for c in cs): continue
        v = [np.mean(src[c, K]) for c in cs]; f = [np.mean(full[c, K]) for c in cs]
        abl.append(f"| {name} | {', '.join(map(str, cs))} | " + " / ".join(f"{100 * x:.1f}" for x in v)
                   + f" | {100 * np.mean(v):.1f} | {100 * (np.mean(v) - np.mean(f)):+.1f} |")
        if d: data[tag] = {int(c): d[c, K] for c in cs}
    return "\n".join(lines) + "\n\n" + "\n".join(abl) + "\n", data


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
    t1, d1 = oneclass_tables(bench)
    t2, d2 = magnetic_tile_table(results)
    text = ("# TDG (cpu preset: 4 scales 16-32 px, 16 channels, 100 iterations per scale, 8 transformations per step)\n\n"
            "## Fashion-MNIST one-class, K=5, image AUROC (%)\n\n" + t1 + "\n## magnetic_tile\n\n" + t2)
    print(text)
    with atomic_path(bench/"tdg_tables.md") as tmp: Path(tmp).write_text(text)
    save_json(bench/"tdg_tables.json", {"fashion_mnist_k5": d1, "magnetic_tile": d2})


if __name__ == "__main__":
    main()
