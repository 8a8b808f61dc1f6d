"""Result plots read back: what a figure draws is what the protocol computed, and bad input is a clear error.

Small real run folders (patch-kNN, random weights, a 48 px synthetic category) are made once for the module.
"""
import json
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fsad_nb.core import FsadError
from fsad_nb.data import make_synthetic_category
from fsad_nb.protocol import METRICS, run_category, summarise
from fsad_nb import viz

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT/"bench"/"results"/"dfd_tables.json"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "Two run folders on one synthetic category: K = 1, 2 with three rounds, and with one round."
    root = tmp_path_factory.mktemp("viz")
    make_synthetic_category(root, "synthetic", n_train=8, n_test_good=4, n_test_defect=4, size=48)
    kw = dict(image_size=48, weights=None, progress=False)
    summary = run_category("knn", root, "synthetic", root/"runs3", shots=(1, 2), rounds=3, **kw)
    run_category("knn", root, "synthetic", root/"runs1", shots=(1, 2), rounds=1, **kw)
    return root, summary


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _line(ax, gid):
    return next(l for l in ax.lines if l.get_gid() == gid)


def test_load_runs_matches_summarise(runs):
    root, summary = runs
    df = viz.load_runs(root/"runs3")
    assert list(df.columns) == viz.RUN_COLUMNS and len(df) == 2 * 3 * len(viz.VALUES)
    again = summarise(root/"runs3", "synthetic", (1, 2), 3, "knn")
    st = viz.round_stats(df).set_index(["K", "metric"])
    for K, row in again["by_shots"].items():
        for m in viz.VALUES:
            assert st.loc[(K, m), "mean"] == pytest.approx(row[m]["mean"], abs=1e-12)
            assert st.loc[(K, m), "std"] == pytest.approx(row[m]["std"], abs=1e-12)   # population std, ddof=0
            assert st.loc[(K, m), "n"] == 3
    assert summary["by_shots"] == again["by_shots"]


def test_metric_vs_k_draws_summary_means_and_bands(runs):
    root, summary = runs
    fig = viz.plot_metric_vs_k(viz.load_runs(root/"runs3"), "synthetic")
    assert len(fig.axes) == len(METRICS)
    for ax, m in zip(fig.axes, METRICS):
        line = _line(ax, "mean:knn")
        assert list(line.get_xdata()) == [1, 2]
        for K, y in zip(line.get_xdata(), line.get_ydata()):
            mu, sd = summary["by_shots"][K][m]["mean"], summary["by_shots"][K][m]["std"]
            assert y == pytest.approx(100 * mu, abs=1e-9)
            assert viz.band_limits(ax, "band:knn", K) == pytest.approx((100 * (mu - sd), 100 * (mu + sd)), abs=1e-9)
        assert ax.get_ylabel().endswith("(%)") and ax.get_xlabel().startswith("K")
    assert "not a dataset the papers report" in fig.get_suptitle()


def test_one_round_draws_no_band(runs):
    root, _ = runs
    fig = viz.plot_metric_vs_k(viz.load_runs(root/"runs1"))
    assert not [c for ax in fig.axes for c in ax.collections if str(c.get_gid()).startswith("band:")]
    assert all(_line(ax, "mean:knn") for ax in fig.axes)


def test_paper_numbers_only_for_paper_datasets(runs):
    root, _ = runs
    df = viz.load_runs(root/"runs3")
    assert not [l for ax in viz.plot_metric_vs_k(df).axes for l in ax.lines if str(l.get_gid()).startswith("paper:")]
    fig = viz.plot_metric_vs_k(df.assign(category="mvtec_ad"))
    assert list(_line(fig.axes[0], "paper:knn").get_ydata()) == pytest.approx([83.4, 86.3])
    assert "MVTec AD" in fig.get_suptitle()


def test_paired_rounds_lines_are_the_rounds(runs):
    root, _ = runs
    df = viz.load_runs(root/"runs3")
    both = pd.concat([df, df.assign(method="other", value=0.9 * df.value)])
    ax = viz.plot_paired_rounds(both, "synthetic", 2, "pixel_auroc").axes[0]
    v = df.query("K == 2 and metric == 'pixel_auroc'").set_index("round").value
    lines = [l for l in ax.lines if str(l.get_gid()).startswith("round:")]
    assert len(lines) == 3
    for l in lines:
        r = int(l.get_gid()[6:])
        assert list(l.get_ydata()) == pytest.approx([100 * v[r], 90 * v[r]])
    assert next(t for t in ax.texts if t.get_gid() == "wins:other>knn").get_text() == "0/3"


def test_clear_errors(runs, tmp_path):
    root, _ = runs
    with pytest.raises(FsadError, match="unknown metric 'f1'"): viz.plot_runs([root/"runs3"], tmp_path/"x.png", metric="f1")
    with pytest.raises(FsadError, match="not a run folder"): viz.plot_runs([tmp_path], tmp_path/"x.png")
    with pytest.raises(FsadError, match="no such folder"): viz.plot_runs([tmp_path/"missing"], tmp_path/"x.png")
    (tmp_path/"c").mkdir(); (tmp_path/"c"/"run.json").write_text(json.dumps({"method": "knn"}))
    with pytest.raises(FsadError, match="no finished rounds"): viz.plot_runs([tmp_path], tmp_path/"x.png")
    with pytest.raises(FsadError, match="unknown kind"): viz.plot_runs([root/"runs3"], tmp_path/"x.png", kind="pie")
    with pytest.raises(FsadError, match=r"\.png, \.svg or \.pdf"): viz.plot_runs([root/"runs3"], tmp_path/"x.gif")
    with pytest.raises(FsadError, match="labels="): viz.load_runs(root/"runs3", root/"runs1")
    assert not list(tmp_path.glob("x.*"))


def test_plot_runs_writes_each_kind(runs, tmp_path):
    root, _ = runs
    viz.plot_runs([root/"runs3"], tmp_path/"k.png")
    viz.plot_runs([root/"runs3", root/"runs1"], tmp_path/"p.svg", kind="paired", labels=["knn", "knn-1"], K=1)
    fig = viz.plot_runs([root/"runs3", root/"runs1"], tmp_path/"a.pdf", kind="ablation")
    assert Image.open(tmp_path/"k.png").format == "PNG"
    assert (tmp_path/"p.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path/"a.pdf").read_bytes()[:4] == b"%PDF"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["runs1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "k.png", "p.svg"]       # no temporary files left


def test_table_gives_readme_numbers_and_paired_deltas():
    df = viz.rounds_from_table(TABLE)
    r = viz.round_stats(df).query("method == 'knn' and category == 'magnetic_tile' and K == 4 and metric == 'aupro'").iloc[0]
    assert (round(100 * r["mean"], 1), round(100 * r["std"], 1), r.n) == (63.3, 1.6, 10)   # bench/results/dfd_tables.md
    entry = json.loads(TABLE.read_text())["ablation_magnetic_tile_k2"]
    a, b = viz.ablation_deltas(df, "magnetic_tile", 2), viz.ablation_deltas(entry)
    assert np.allclose(a["mean"], b["mean"]) and np.allclose(a.se, b.se)
    d = 100 * np.array(entry["use_perlin_d_False"]["delta_aupro"])
    se = a.query("variant == 'use_perlin_d_False' and metric == 'aupro'").se.item()
    assert 100 * se == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)))
    assert f"{d.mean():+.1f} ± {100 * se:.1f}" == "-9.7 ± 2.7"                           # the README's ablation row


def test_ablation_bars_errors_and_paper_markers():
    fig = viz.plot_ablation(viz.rounds_from_table(TABLE), "magnetic_tile", K=2)
    st = viz.ablation_deltas(json.loads(TABLE.read_text())["ablation_magnetic_tile_k2"]).set_index(["variant", "metric"])
    paper = viz.paper_deltas().set_index(["variant", "metric"]).delta
    variants = list(viz.ABLATION_LABELS)
    for ax, m in zip(fig.axes, METRICS):
        bars = next(c for c in ax.containers if isinstance(c, matplotlib.container.BarContainer))
        assert [b.get_width() for b in bars.patches] == pytest.approx([100 * st.loc[(v, m), "mean"] for v in variants])
        half = [(s[1, 0] - s[0, 0]) / 2 for s in bars.errorbar.lines[2][0].get_segments()]
        assert half == pytest.approx([100 * st.loc[(v, m), "se"] for v in variants])
        marks = next(c for c in ax.collections if c.get_gid() == f"paper:{m}").get_offsets()[:, 0]
        assert list(marks) == pytest.approx([100 * paper[(v, m)] for v in variants])
        assert any(l.get_gid() == "zero" for l in ax.lines)


def test_gallery_rows_colour_bar_and_browser(tmp_path):
    rng = np.random.default_rng(0)
    imgs, maps = rng.random((6, 3, 16, 16)), rng.random((6, 16, 16))
    labels, scores = np.array([0, 0, 0, 1, 1, 1]), rng.random(6)
    fig = viz.heatmap_gallery(imgs, maps, labels, scores, masks=maps > 0.8, n=4, path=tmp_path/"g.png")
    assert [a.get_ylabel() for a in fig.axes[:12:4]] == ["image", "ground truth", "anomaly map"]
    assert fig.axes[-1].get_ylabel() == "anomaly score"
    assert Image.open(tmp_path/"g.png").format == "PNG" and [p.name for p in tmp_path.iterdir()] == ["g.png"]
    slider, view = viz.browse(imgs, maps, labels, scores).children
    first = view.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"          # drawn at once
    slider.value = 3
    assert view.value != first


def test_bench_script_writes_the_figures(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("plot_results", ROOT/"bench"/"plot_results.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    written = mod.main(["--out", str(tmp_path), "--dpi", "50"])
    assert sorted(p.name for p in written) == sorted([*mod.FIGURES, "tdg_fashion_mnist.png", *mod.LEE_FIGURES])
    assert all(Image.open(p).format == "PNG" for p in written)


def test_tables_rebuild_what_was_rerun_and_keep_the_rest(runs, tmp_path, monkeypatch):
    "bench/dfd_tables.py: a present run folder is read; an absent one keeps its rows from the previous table file and is named."
    import importlib, sys
    monkeypatch.syspath_prepend(str(ROOT/"bench"))
    T = importlib.import_module("dfd_tables"); T.KEPT.clear()
    root, _ = runs
    fresh = T.rounds_of(root/"runs3", "synthetic", 1)
    kept_row = {"image_auroc": [0.6, 0.7, 0.8], "rounds": [0, 1, 2], "fit_s_mean": 12.5}
    text, data = T.method_table(root, "synthetic", (1,), [("knn", "runs3"), ("regad", "not_here")], False,
                                previous={"regad/k1": kept_row})
    assert data["knn/k1"]["image_auroc"] == [fresh[r]["image_auroc"] for r in (0, 1, 2)]
    assert data["regad/k1"]["image_auroc"] == kept_row["image_auroc"] and data["regad/k1"]["fit_s_mean"] == 12.5
    assert "| RegAD | 1 | 70.0 ± 8.2 | 12.5 | 3 (0–2) |" in text
    assert T.kept_note().strip().endswith("RegAD (synthetic, K = 1).")
    T.KEPT.clear()
    _, data = T.method_table(root, "synthetic", (1,), [("knn", "runs3"), ("regad", "not_here")], False)
    assert "regad/k1" not in data and T.kept_note() == ""              # no previous table: nothing to keep
