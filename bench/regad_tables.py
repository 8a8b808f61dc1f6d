"""Tables of RegAD's component ablation on magnetic_tile (the paper's Table 5), beside patch-kNN on the same rounds.

    bash bench/regad_ablation.sh         # the runs (A = support augmentations, F = registration training, S = STNs)
    python bench/regad_tables.py         # reads results/, writes bench/results/regad_ablation.md and .json

Each variant is compared with the full model (A+F+S, results/lee/regad) on the same support draws: the mean
paired difference ± its standard error over the draws. Absent run folders keep their rows from the table file
written last time (see dfd_tables.py).
"""
import argparse, sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/"bench"))
from fsad_nb.protocol import METRICS                                      # noqa: E402
import dfd_tables as T                                                    # noqa: E402

VARIANTS = {  # name in the table -> (run folder under results/, A, F, S)
    "regad_none": ("regad_ablation/none", "–", "–", "–"),
    "regad_A": ("regad_ablation/A", "A", "–", "–"),
    "regad_F": ("regad_ablation/F", "–", "F", "–"),
    "regad_FS": ("regad_ablation/FS", "–", "F", "S"),
    "regad_AF": ("regad_ablation/AF", "A", "F", "–"),
    "regad": ("lee/regad", "A", "F", "S"),
}
T.NAMES.update({n: ("RegAD with " + "+".join(c for c in abc if c != "–")) if set(abc) != {"–"} else "RegAD without A, F, S"
                for n, (_, *abc) in VARIANTS.items()} | {"regad": "RegAD (A+F+S)"})
SHOTS = (2, 4, 8)


def paired_rows(table:dict) -> tuple[str, dict]:
    "Each variant minus the full model, per K, over the rounds both have (the rows of `table`, as method_table wrote them)."
    lines = ["| A | F | S | K | Δ image AUROC | Δ pixel AUROC | Δ AUPRO | rounds |", "|---|---|---|---|---|---|---|---|"]
    data = {}
    for name, (_, *abc) in VARIANTS.items():
        if name == "regad": continue
        for K in SHOTS:
            a, b = table.get(f"{name}/k{K}"), table.get(f"regad/k{K}")
            if not (a and b): continue
            common = sorted(set(a["rounds"]) & set(b["rounds"]))
            pick = lambda row, m: np.array([row[m][row["rounds"].index(r)] for r in common], float)
            d = {m: (pick(a, m) - pick(b, m)).tolist() for m in METRICS}
            data[f"{name}/k{K}"] = {**d, "rounds": common}
            lines.append("| " + " | ".join(abc) + f" | {K} | " + " | ".join(T.fmt_delta(d[m]) for m in METRICS)
                         + f" | {len(common)} |")
    return "\n".join(lines) + "\n", data


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT/"results"))
    p.add_argument("--out", default=str(ROOT/"bench"/"results"))
    a = p.parse_args(argv)
    res, out = Path(a.results), Path(a.out)
    prev = T.previous_table(out, "regad_ablation")
    # the variants first: the rounds the first one has are the rounds every row is compared on (an ablation run with
    # fewer draws than the main run is then compared on its draws)
    methods = [(n, d) for n, (d, *_) in VARIANTS.items()] + [("knn", "lee/knn")]
    T.NAMES["knn"] = "patch-kNN"
    t, d = T.method_table(res, "magnetic_tile", SHOTS, methods, True, prev.get("magnetic_tile")
                          or T.previous_table(out, "lee_tables").get("magnetic_tile"))
    pt, pd_ = paired_rows(d)
    md = ["# RegAD's components on magnetic_tile (the paper's Table 5; EfficientNet-Lite0, 224 px, `cpu` preset)\n",
          "A = the 22 support augmentations, F = registration training on dtd10 and elpv, S = the spatial transformers.\n",
          t, "Each variant minus the full model (A+F+S) on the same rounds (± standard error over the rounds):\n", pt]
    T.write_tables(out, "regad_ablation", "\n".join(md), regad_ablation={"magnetic_tile": d},
                   regad_ablation_paired={"magnetic_tile": pd_})


if __name__ == "__main__":
    main()
