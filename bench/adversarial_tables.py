"""Tables of the UniAD / adversarial-alignment runs: UniAD, UniAD + adversarial, RegAD + adversarial beside RegAD and
patch-kNN on the same support rounds, and the paired difference the adversarial loss makes (± its standard error).

    bash bench/adversarial_runs.sh          # the runs (see the README for each command)
    python bench/adversarial_tables.py      # reads results/lee/, writes bench/results/lee_tables.md and .json

CPU budget (two cores): RegAD 200 registration steps of 8 pairs at lr 1e-3 (paper: 50 epochs of 32 pairs at 1e-4);
UniAD 300 steps of 8 images at the authors' lr 1e-4 (paper: 1000 epochs). The `_ft` runs fine-tune UniAD for 20
steps on the K support images in `fit` (our reading of the protocol). results/lee/seed1/ holds the same runs with
seed=1 (magnetic_tile, K = 2): the spread a training seed alone makes.

Run folders absent from this machine keep their rows from the table files written last time (see dfd_tables.py);
a paired difference is drawn only between two runs read from the same place (both rerun, or both kept).
"""
import argparse, sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/"bench"))
from fsad_nb.protocol import METRICS                                      # noqa: E402
import dfd_tables as T                                                    # noqa: E402

T.NAMES.update({"uniad": "UniAD", "uniad_adv": "UniAD + adv", "regad_adv": "RegAD + adv",
                "uniad_ft": "UniAD, fine-tuned", "uniad_adv_ft": "UniAD + adv, fine-tuned"})
RUNS = ["knn", "regad", "regad_adv", "uniad", "uniad_adv", "uniad_ft", "uniad_adv_ft"]
PAIRS = [("regad_adv", "regad"), ("uniad_adv", "uniad"), ("uniad_adv_ft", "uniad_ft"), ("uniad_ft", "uniad")]
CATEGORIES = {"magnetic_tile": "", "elpv_mono": "_elpv", "elpv_poly": "_elpv"}
SHOTS = (2, 4, 8)


def paired_table(res, category, suffix, has_masks, previous:dict|None=None) -> tuple[str, dict]:
    """Mean paired difference (with minus without) per K over the rounds both runs have, ± its standard error;
    `previous`: this category's rows in the table file written last time (for absent run folders)."""
    previous = previous or {}
    cols = METRICS if has_masks else METRICS[:1]
    lines = ["| difference | K | " + " | ".join(f"Δ {c.replace('_', ' ').replace('auroc', 'AUROC').replace('aupro', 'AUPRO')}"
                                                for c in cols) + " | rounds |", "|" + "---|" * (len(cols) + 3)]
    data = {}
    for a, b in PAIRS:
        for K in SHOTS:
            if (res/f"{a}{suffix}"/category).exists() != (res/f"{b}{suffix}"/category).exists(): continue   # one rerun, one kept
            ra, rb = (T.rounds_of(res/f"{n}{suffix}", category, K, previous.get(f"{n}/k{K}"), T.NAMES[n]) for n in (a, b))
            common = sorted(set(ra) & set(rb))
            if not common: continue
            d = {m: (np.array([ra[r][m] for r in common], float) - np.array([rb[r][m] for r in common], float)).tolist() for m in cols}
            data[f"{a}-{b}/k{K}"] = {**d, "rounds": common}
            lines.append(f"| {T.NAMES[a]} − {T.NAMES[b]} | {K} | " + " | ".join(T.fmt_delta(d[m]) for m in cols) + f" | {len(common)} |")
    return "\n".join(lines) + "\n", data


def seed_table(res, previous:dict|None=None) -> tuple[str, dict]:
    "The adversarial difference under a second training seed (magnetic_tile, K = 2, the rounds the seed-1 runs have): "
    "how much of a difference the training seed alone makes, beside the support draws. A host without its seed-1 "
    "runs here keeps its rows from the table file written last time (`previous`, lee_seeds.json)."
    data, previous = {}, previous or {}
    for host in ("regad", "uniad"):
        if not (res/"seed1"/host).exists():           # this host's seed-1 runs are not here: its rows as written last time
            kept = {k: v for k, v in previous.items() if k.startswith(f"{host}/")}
            if kept: data.update(kept); T.KEPT.append((f"the second training seed of {T.NAMES[host]}", "magnetic_tile", 2))
            continue
        for seed, base in ((0, res), (1, res/"seed1")):
            ra, rb = (T.rounds_of(base/n, "magnetic_tile", 2) for n in (host, f"{host}_adv"))
            common = sorted(set(ra) & set(rb) & set(T.rounds_of(res/"seed1"/host, "magnetic_tile", 2)))
            if not common: continue
            data[f"{host}/seed{seed}"] = {"plain": [ra[k]["image_auroc"] for k in common],
                                          "adversarial": [rb[k]["image_auroc"] for k in common], "rounds": common}
    rows = ["| host | seed | without | with adversarial | Δ | rounds |", "|---|---|---|---|---|---|"]
    for key, d in data.items():
        host, seed = key.split("/seed")
        b, a = np.array(d["plain"], float), np.array(d["adversarial"], float)
        rows.append(f"| {T.NAMES[host]} | {seed} | {T.fmt(b)} | {T.fmt(a)} | {T.fmt_delta(a - b)} | {len(d['rounds'])} |")
    return "\n".join(rows) + "\n", data


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT/"results"/"lee"))
    p.add_argument("--out", default=str(ROOT/"bench"/"results"))
    a = p.parse_args(argv)
    res, out = Path(a.results), Path(a.out)
    md, js, paired = ["# UniAD and the adversarial alignment beside RegAD and patch-kNN (EfficientNet-Lite0, 224 px, CPU budget)\n",
                      __doc__.split("\n\n")[2].strip() + "\n"], {}, {}
    prev, prev_seeds = T.previous_table(out, "lee_tables"), T.previous_table(out, "lee_seeds")
    for cat, suffix in CATEGORIES.items():
        masks = cat == "magnetic_tile"
        t, d = T.method_table(res, cat, SHOTS, [(n, f"{n}{suffix}") for n in RUNS], masks, prev.get(cat))
        md += [f"## {cat}\n", t]; js[cat] = d
        t, d = paired_table(res, cat, suffix, masks, prev.get(cat))
        md += [f"Paired differences on {cat} (same rounds; ± standard error over rounds):\n", t]; paired[cat] = d
    t, seeds = seed_table(res, prev_seeds)
    md += ["## A second training seed (magnetic_tile, K = 2, image AUROC)\n", t]
    T.write_tables(out, "lee_tables", "\n".join(md), lee_tables=js, lee_paired=paired, lee_seeds=seeds)


if __name__ == "__main__":
    main()
