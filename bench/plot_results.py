"""Figures of the README's results, drawn from the per-round table that bench/dfd_tables.py writes.

    python bench/plot_results.py        # reads bench/results/dfd_tables.json, writes the PNGs below to nbs/images/

results_magnetic_tile.png          image/pixel AUROC and AUPRO against K, mean ± std over the 10 support rounds
results_elpv.png                   image AUROC against K on elpv_mono and elpv_poly
paired_magnetic_tile_k4.png        each support round's image AUROC at K = 4, joined across the methods
ablation_dfd_magnetic_tile_k2.png  DFD's K = 2 ablations as paired differences to the full model, with the paper's
                                   differences on MVTec AD (Bai et al. 2024, Tables 4-6) beside them
tdg_fashion_mnist.png              TDG one-class AUROC against K per Fashion-MNIST class (bench/results/tdg_tables.json)
lee_magnetic_tile.png, lee_elpv.png  UniAD, UniAD + adv, RegAD, RegAD + adv and patch-kNN against K on the same rounds
                                   (bench/results/lee_tables.json, written by bench/adversarial_tables.py)

magnetic_tile and elpv are not datasets the papers report: the figures say so instead of drawing the papers'
MVTec AD numbers beside ours (the ablation figure shows the paper's differences as directions to compare).
"""
import argparse, sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt                                           # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsad_nb.viz import (rounds_from_table, plot_metric_vs_k, plot_paired_rounds, plot_ablation,  # noqa: E402
                         save_figure)

FIGURES = {
    "results_magnetic_tile.png": lambda df: plot_metric_vs_k(df, "magnetic_tile"),
    "results_elpv.png": lambda df: plot_metric_vs_k(df, ["elpv_mono", "elpv_poly"]),
    "paired_magnetic_tile_k4.png": lambda df: plot_paired_rounds(df, "magnetic_tile", 4, "image_auroc"),
    "ablation_dfd_magnetic_tile_k2.png": lambda df: plot_ablation(df, "magnetic_tile", K=2),
}

LEE_FIGURES = {"lee_magnetic_tile.png": "magnetic_tile", "lee_elpv.png": ["elpv_mono", "elpv_poly"]}


def tdg_fashion_mnist(path):
    "TDG's one-class AUROC per Fashion-MNIST class against K, mean ± std over the rounds, from tdg_tables.json."
    import json
    import pandas as pd
    import seaborn as sns
    from fsad_nb.data import FASHION_MNIST_CLASSES
    rows = [dict(cls=f"{int(c)} {FASHION_MNIST_CLASSES[int(c)]}", K=int(K), auroc=100 * v)
            for key, vs in json.loads(Path(path).read_text())["fashion_mnist"].items()
            for c, K in [key.split("_k")] for v in vs]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sns.lineplot(pd.DataFrame(rows), x="K", y="auroc", hue="cls", marker="o", errorbar="sd", palette="colorblind", ax=ax)
    ax.set(xscale="log", xlabel="K (normal support images)", ylabel="image AUROC (%)",
           title="TDG, Fashion-MNIST one-class (cpu preset): mean ± sample std over the rounds\n"
                 "the paper shows Fashion-MNIST only as bars, so no paper numbers are drawn")
    ax.set_xticks([1, 5, 10], ["1", "5", "10"]); ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8, title="normal class")
    fig.tight_layout()
    return fig


def main(argv=None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default=str(ROOT/"bench"/"results"/"dfd_tables.json"))
    p.add_argument("--out", default=str(ROOT/"nbs"/"images"))
    p.add_argument("--dpi", type=int, default=100)
    a = p.parse_args(argv)
    df, written = rounds_from_table(a.table), []
    for name, draw in FIGURES.items():
        fig = draw(df)
        written.append(save_figure(fig, Path(a.out)/name, dpi=a.dpi))
        plt.close(fig)
        print(written[-1])
    fig = tdg_fashion_mnist(Path(a.table).parent/"tdg_tables.json")
    written.append(save_figure(fig, Path(a.out)/"tdg_fashion_mnist.png", dpi=a.dpi)); plt.close(fig); print(written[-1])
    LEE_METHODS = ["knn", "regad", "regad_adv", "uniad", "uniad_adv", "uniad_ft"]
    lee = rounds_from_table(Path(a.table).parent/"lee_tables.json")
    for name, cats in LEE_FIGURES.items():
        fig = plot_metric_vs_k(lee, cats, metrics=["image_auroc"], methods=[m for m in LEE_METHODS if m in set(lee.method)])
        written.append(save_figure(fig, Path(a.out)/name, dpi=a.dpi)); plt.close(fig); print(written[-1])
    return written


if __name__ == "__main__":
    main()
