"""Figures of the README's results, drawn from the per-round tables in bench/results/ (`readme_runs`).

    python bench/plot_results.py        # reads bench/results/*_tables.json, writes the PNGs below to nbs/images/

results_magnetic_tile.png          image/pixel AUROC and AUPRO against K, mean ± std over the 10 support rounds, every
                                   method of the README's magnetic_tile table
results_elpv.png                   image AUROC against K on elpv_mono and elpv_poly, every method of the README's table
paired_magnetic_tile_k4.png        each support round's image AUROC at K = 4, joined across the methods
ablation_dfd_magnetic_tile_k2.png  DFD's K = 2 ablations as paired differences to the full model, with the paper's
                                   differences on MVTec AD (Bai et al. 2024, Tables 4-6) beside them
tdg_fashion_mnist.png              TDG one-class AUROC against K per Fashion-MNIST class (bench/results/tdg_tables.json)
lee_magnetic_tile.png, lee_elpv.png  UniAD, UniAD + adv, RegAD, RegAD + adv and patch-kNN against K on the same rounds
                                   (bench/results/lee_tables.json, written by bench/adversarial_tables.py)

Every figure takes its colours, line styles, display names and style from fsad_nb.viz (`method_style`,
`method_name`, `FIGURE_STYLE`): a hue per method, a lightness and line style per variant.
magnetic_tile and elpv are not datasets the papers report: the figures say so instead of drawing the papers'
MVTec AD numbers beside ours (the ablation figure shows the paper's differences as directions to compare).
"""
import argparse, sys
from pathlib import Path

import pandas as pd

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt                                           # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsad_nb.viz import (rounds_from_table, plot_metric_vs_k, plot_paired_rounds, plot_ablation,  # noqa: E402
                         save_figure, method_colour, shade, FIGURE_STYLE)

def readme_runs(results=ROOT/"bench"/"results") -> pd.DataFrame:
    """The rounds behind the README's tables and figures, in `load_runs`'s long format: dfd_tables.json (DFD,
    SimpleNet, patch-kNN at K = 1, 2, 4, DFD's ablations) and lee_tables.json (patch-kNN at K = 2, 4, 8, RegAD,
    UniAD and the adversarial variants), all on the same support draws. RegAD is read from lee_tables.json alone
    (dfd_tables.json repeats the same runs at K = 2 and 4 beside DFD).
    A round present in both files (patch-kNN at K = 2, 4) must agree to 0.05 points."""
    a = rounds_from_table(Path(results)/"dfd_tables.json")
    a, b = a[a.method != "regad"], rounds_from_table(Path(results)/"lee_tables.json")
    key = ["method", "category", "K", "round", "metric"]
    both = a.merge(b, on=key)
    if len(both) and (both.value_x - both.value_y).abs().max() > 5e-4:          # reruns of the same round: float noise only
        raise ValueError("dfd_tables.json and lee_tables.json disagree on the rounds they share")
    return pd.concat([a, b]).drop_duplicates(key, keep="last").reset_index(drop=True)


FIGURES = {
    "results_magnetic_tile.png": lambda df: plot_metric_vs_k(df, "magnetic_tile"),
    "results_elpv.png": lambda df: plot_metric_vs_k(df, ["elpv_mono", "elpv_poly"]),
    "paired_magnetic_tile_k4.png": lambda df: plot_paired_rounds(df, "magnetic_tile", 4, "image_auroc"),
    "ablation_dfd_magnetic_tile_k2.png": lambda df: plot_ablation(df, "magnetic_tile", K=2),
}

LEE_FIGURES = {"lee_magnetic_tile.png": "magnetic_tile", "lee_elpv.png": ["elpv_mono", "elpv_poly"]}


def tdg_fashion_mnist(path):
    "TDG's one-class AUROC per Fashion-MNIST class, one row per class, a dot per K (mean ± sample std over the rounds)."
    import json
    import numpy as np
    import seaborn as sns
    from fsad_nb.datasets import FASHION_MNIST_CLASSES
    table = json.loads(Path(path).read_text())["fashion_mnist"]
    Ks = sorted({int(k.split("_k")[1]) for k in table})
    classes = sorted({int(k.split("_k")[0]) for k in table})
    with sns.axes_style(FIGURE_STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for j, K in enumerate(Ks):                       # TDG's hue, darker for more shots
        v = [100 * np.asarray(table[f"{c}_k{K}"]) for c in classes]
        y = np.arange(len(classes)) + 0.22 * (j - (len(Ks) - 1) / 2)
        ax.errorbar([x.mean() for x in v], y, xerr=[x.std(ddof=1) if len(x) > 1 else 0 for x in v], ls="none",
                    marker="o", ms=5, capsize=2, color=shade(method_colour("tdg"), 1.3 - 0.3 * j), label=f"K = {K}")
    ax.set_yticks(range(len(classes)), [f"{c} {FASHION_MNIST_CLASSES[c]}" for c in classes]); ax.invert_yaxis()
    ax.axvline(50, color="0.4", lw=0.9, ls="--"); ax.text(50.5, len(classes) - 0.6, "chance", fontsize=8, color="0.3")
    ax.set(xlabel="image AUROC (%)", ylabel="normal class")
    fig.legend(loc="outside right center", frameon=False, fontsize=9, title="TDG, support")
    n = len(next(iter(table.values())))
    fig.suptitle(f"Fashion-MNIST one-class, TDG (cpu preset): mean ± sample std over {n} support rounds\n"
                 "the paper shows Fashion-MNIST only as bars, so no paper numbers are drawn", fontsize=10)
    return fig


def main(argv=None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default=str(ROOT/"bench"/"results"/"dfd_tables.json"))
    p.add_argument("--out", default=str(ROOT/"nbs"/"images"))
    p.add_argument("--dpi", type=int, default=100)
    a = p.parse_args(argv)
    df, written = readme_runs(Path(a.table).parent), []
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
