"""Tables of the DFD / SimpleNet protocol runs: each method beside patch-kNN and RegAD on the *same* support rounds,
and the K=2 component ablations as paired differences to the full model on the same rounds.

    python bench/dfd_tables.py            # reads results/, writes bench/results/dfd_<category>.md and .json

Run directories (as written by `fsad run`, see the README for the commands): results/dfd_lite0,
results/simplenet_lite0, results/knn_lite0, results/lee/regad (RegAD at its `cpu` preset, K = 2 and 4 here),
results/dfd_ablation/<switch>, and the elpv ones.
A method with fewer rounds than another is compared on the rounds both have, so a row's "rounds" column says
exactly which support draws the means are over. A run (or one of its categories) that is not on this machine keeps
the rows the table file written last time holds for it (its per-round values); the markdown lists those rows, so a partial rerun
refreshes only what it reran.
"""
import argparse, json, sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsad_nb.core import save_json, atomic_path                           # noqa: E402
from fsad_nb.protocol import METRICS, load_round                          # noqa: E402
from fsad_nb.viz import VALUES                                            # noqa: E402

NAMES = {"dfd": "DFD", "simplenet": "SimpleNet", "knn": "patch-kNN", "regad": "RegAD"}
ABLATIONS = {  # run directory under results/dfd_ablation -> (the paper's table, what is switched off)
    "use_frequency_False": ("Table 6", "no frequency split (original image, one path)"),
    "bands_high": ("Table 6", "high band only"),
    "bands_low": ("Table 6", "low band only"),
    "use_similarity_False": ("Table 4", "no similarity loss"),
    "use_gaussian_d_False": ("Table 4", "no Gaussian discriminator"),
    "use_perlin_d_False": ("Table 4", "no Perlin discriminator"),
    "perlin_d_vit_False": ("Table 5", "Perlin discriminator as a plain MLP"),
}


KEPT = []  # (what, category, K) of the rows taken from the previous table file, for the markdown's note


def previous_table(out, stem:str) -> dict:
    "The table file written last time (<out>/<stem>.json), or {} when there is none."
    path = Path(out)/f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def rounds_of(run_dir, category, K, kept:dict|None=None, label:str|None=None) -> dict:
    """{round index: metrics} of the finished rounds of one run at K (read and validated by the protocol's reader).
    When the run has no folder for this category here, the rounds of `kept` (that row in the previous table file) instead."""
    if not (Path(run_dir)/category).exists() and kept:
        KEPT.append((label or Path(run_dir).name, category, K))
        return {int(r): {v: kept[v][i] for v in VALUES if v in kept} for i, r in enumerate(kept["rounds"])}
    found = {int(p.stem[5:]): load_round(p) for p in sorted((Path(run_dir)/category/f"k{K}").glob("round*.json"))}
    return {r: d for r, d in found.items() if d is not None}


def fmt(v) -> str:
    v = np.asarray([x for x in v if x is not None], dtype=float)
    return f"{100 * v.mean():.1f} ± {100 * v.std():.1f}" if len(v) else "–"


def fmt_delta(d) -> str:
    "Mean paired difference in points, with its standard error over the rounds once there are at least two."
    d = 100 * np.asarray(d, dtype=float)
    return f"{d.mean():+.1f}" + (f" ± {d.std(ddof=1) / np.sqrt(len(d)):.1f}" if len(d) > 1 else "")


def method_table(res, category, shots, methods, has_masks, previous:dict|None=None) -> tuple[str, dict]:
    """One row per (method, K), each over the rounds of the first method that has any at that K (the pairing base);
    `previous`: this category's rows in the table file written last time (used where a run folder is absent)."""
    previous = previous or {}
    runs = lambda name, d, K: rounds_of(res/d, category, K, previous.get(f"{name}/k{K}"), NAMES[name])
    cols = METRICS if has_masks else METRICS[:1]
    head = "| method | K | " + " | ".join(c.replace("_", " ").replace("auroc", "AUROC").replace("aupro", "AUPRO")
                                         for c in cols) + " | fit s | rounds |"
    lines, data = [head, "|" + "---|" * (len(cols) + 4)], {}
    for K in shots:
        base = next((rs for name, d in methods if (rs := runs(name, d, K))), None)
        if not base: continue
        common = sorted(base)
        for name, d in methods:
            rs = runs(name, d, K)
            if not set(common) <= set(rs): continue
            vals = {m: [rs[r].get(m) for r in common] for m in (*cols, "fit_s")}
            fit = [v for v in vals.pop("fit_s") if v is not None]          # a kept row may have only its mean
            fit = np.mean(fit) if fit else previous.get(f"{name}/k{K}", {}).get("fit_s_mean")
            data[f"{name}/k{K}"] = {**vals, "rounds": common, "fit_s_mean": fit}
            lines.append(f"| {NAMES[name]} | {K} | " + " | ".join(fmt(vals[m]) for m in cols)
                         + f" | {'–' if fit is None else f'{fit:.1f}'} | {len(common)} ({common[0]}–{common[-1]}) |")
    return "\n".join(lines) + "\n", data


def ablation_table(res, category, K=2, previous:dict|None=None) -> tuple[str, dict]:
    """Each ablation's mean and its paired difference (ablation minus full DFD) over the rounds both have;
    `previous`: the table file written last time (its rows stand in for absent run folders)."""
    previous = previous or {}
    full = rounds_of(res/"dfd_lite0", category, K, previous.get(category, {}).get(f"dfd/k{K}"), "DFD")
    kept = previous.get(f"ablation_{category}_k{K}", {})
    lines = ["| paper | switched off | image AUROC | Δ image | pixel AUROC | Δ pixel | AUPRO | Δ AUPRO | rounds |",
             "|---|---|---|---|---|---|---|---|---|"]
    data, used = {}, set()
    for tag, (table, what) in ABLATIONS.items():
        rs = rounds_of(res/"dfd_ablation"/tag, category, K, kept.get(tag), f"DFD ablation {tag}")
        common = sorted(set(rs) & set(full))
        if not common: continue
        cells, row = [], {"rounds": common}
        for m in METRICS:
            a = np.array([rs[r][m] for r in common]); f = np.array([full[r][m] for r in common])
            cells += [fmt(a), fmt_delta(a - f)]
            row[m], row[f"delta_{m}"] = a.tolist(), (a - f).tolist()
        data[tag] = row; used |= set(common)
        lines.append(f"| {table} | {what} | " + " | ".join(cells) + f" | {len(common)} |")
    if used:
        lines.append("| – | nothing (the full DFD on these rounds) | "
                     + " | ".join(f"{fmt([full[r][m] for r in sorted(used)])} | 0" for m in METRICS) + f" | {len(used)} |")
    return "\n".join(lines) + "\n", data


def kept_note() -> str:
    "The markdown note naming the rows taken from the previous table file ('' when every row was read from its runs)."
    if not KEPT: return ""
    by = {}
    for what, cat, K in dict.fromkeys(KEPT): by.setdefault(what, {}).setdefault(cat, []).append(str(K))
    parts = []
    for what, cats in by.items():
        parts.append(f"{what} (" + "; ".join(f"{c}, K = {', '.join(ks)}" for c, ks in cats.items()) + ")")
    return ("\nKept from the previous table file (their run folders were not on the machine that wrote this one): "
            + "; ".join(parts) + ".\n")


def write_tables(out, stem:str, text:str, **tables):
    "Print the markdown `text` (and which rows were kept), write it to <out>/<stem>.md and each table to <out>/<name>.json (atomically)."
    text += kept_note()
    print(text)
    Path(out).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out)/f"{stem}.md") as tmp: Path(tmp).write_text(text)
    for name, js in tables.items(): save_json(Path(out)/f"{name}.json", js)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT/"results"))
    p.add_argument("--out", default=str(ROOT/"bench"/"results"))
    a = p.parse_args(argv)
    res, out = Path(a.results), Path(a.out)
    md = ["# DFD and SimpleNet beside patch-kNN and RegAD (EfficientNet-Lite0, 224 px, CPU budget N=16, 10 epochs)\n"]
    js, prev = {}, previous_table(out, "dfd_tables")
    t, d = method_table(res, "magnetic_tile", (1, 2, 4),
                        [("dfd", "dfd_lite0"), ("simplenet", "simplenet_lite0"), ("knn", "knn_lite0"),
                         ("regad", "lee/regad")], True, prev.get("magnetic_tile"))
    md += ["## magnetic_tile\n", t]; js["magnetic_tile"] = d
    t, d = ablation_table(res, "magnetic_tile", previous=prev)
    md += ["## Ablations on magnetic_tile, K=2 (Δ = ablation − full DFD, paired over the same rounds, ± its standard error)\n", t]
    js["ablation_magnetic_tile_k2"] = d
    for cat in ("elpv_mono", "elpv_poly"):
        t, d = method_table(res, cat, (1, 2, 4), [("dfd", "dfd_lite0_elpv"), ("simplenet", "simplenet_lite0_elpv"),
                                             ("knn", "knn_lite0_elpv"), ("regad", "lee/regad_elpv")], False, prev.get(cat))
        md += [f"## {cat}\n", t]; js[cat] = d
    write_tables(out, "dfd_tables", "\n".join(md), dfd_tables=js)


if __name__ == "__main__":
    main()
