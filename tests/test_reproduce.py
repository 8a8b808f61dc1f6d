"`fsad reproduce` and the presets: every preset field exists, tables listed, a plan with a time estimate, and a table run "
"end to end (runs, table, figure, resume) on small synthetic MVTec-layout categories at a tiny preset."
import argparse, dataclasses, json
from pathlib import Path
import pytest
from fsad_nb.core import FsadError
from fsad_nb.data import make_synthetic_category
from fsad_nb.detector import method_class
from fsad_nb.presets import presets, register_preset, apply_preset, check_presets
from fsad_nb import reproduce as R

def _parse(argv):
    p = argparse.ArgumentParser(prog="fsad"); sub = p.add_subparsers(dest="cmd")
    R.add_reproduce_parser(sub)
    return p.parse_args(["reproduce", *argv])

def test_every_preset_field_exists():
    assert check_presets() >= 12
    for method, named in presets().items():
        assert {"paper", "cpu"} <= set(named), method
        fields = {f.name for f in dataclasses.fields(method_class(method).config_cls)}
        for name, p in named.items(): assert set(p["config"]) <= fields, (method, name, set(p["config"]) - fields)

def test_cpu_presets_are_the_readme_budgets():
    assert apply_preset("regad", "cpu") == dict(epochs=10, iters_per_epoch=20, batch_size=8, lr=0.001)
    assert apply_preset("dfd", "cpu") == dict(n_augment=16, epochs=10, textures="dtd10", texture_max=100)
    assert apply_preset("simplenet", "cpu") == dict(n_augment=16, epochs=10)
    assert apply_preset("tdg", "cpu") == dict(max_size=32, min_size=16, nfc=16, iterations=100, transforms_per_step=8)
    assert apply_preset("uniad", "cpu") == dict(epochs=1, iters_per_epoch=300, batch_size=8)
    assert apply_preset("knn", "cpu") == {}
    assert apply_preset("regad", "paper", {"epochs": 2})["epochs"] == 2          # --set wins over the preset

def test_list_shows_every_table(capsys):
    R.cmd_reproduce(_parse(["--list"]))
    out = capsys.readouterr().out
    for name in ("regad-mvtec", "regad-mpdd", "dfd-mvtec", "dfd-visa", "lee-mvtec", "lee-dagm", "tdg-mvtec"): assert name in out
    for t in R.TABLES.values():                       # only tables whose paper numbers ship
        assert any(R._paper_cell(t, e, K, m, "average") is not None for e in t.entries for K in t.shots for m in t.metrics), t.name

def test_paper_numbers_are_unique_and_named():
    rows = R.paper_results()
    keys = [(r["paper"], r["dataset"], r["method"], r["shots"], r["metric"], r["category"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert all(r["paper"] in R.PAPERS and r["table"] for r in rows)
    assert R.paper_value("huang2022_regad", "mvtec", "RegAD", 8, "image_auroc", "average")["value"] == 91.2

def test_dry_run_prints_plan_and_estimate(capsys):
    p = R.cmd_reproduce(_parse(["regad-mvtec", "--dry-run"]))
    out = capsys.readouterr().out
    assert "450 rounds" in out and "15 leave-one-out trainings" in out and "estimated time:" in out
    assert p["total_s"] is not None and p["total_s"] > 0 and "no estimate" not in out.split("estimated time:")[1].splitlines()[0]
    assert R.load_timings()["device"] in out                     # the plan says where its timings come from

def test_time_model_counts_steps():
    u = dict(embed_image_s=0.5, fit_const_s=2.0, train_step_s=3.0, predict_image_s=0.1)
    c = method_class("dfd").config_cls(n_augment=10, epochs=4, batch_size=8)
    assert R.round_seconds("dfd", c, 2, 100, u) == pytest.approx(20 * 0.5 + 4 * 3 * 3.0 + 100 * 0.1)   # ceil(20/8) = 3 steps
    c = method_class("regad").config_cls(epochs=5, batch_size=10)
    assert R.meta_seconds("regad", c, 95, u) == pytest.approx(5 * 9 * 3.0)                              # 95 // 10 steps/epoch

TINY = dict(weights=None, epochs=1, iters_per_epoch=1, batch_size=2, train_size=32, augment=False)

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("mvtec")
    for i, c in enumerate(("bottle", "cable", "capsule")):
        make_synthetic_category(r, c, n_train=6, n_test_good=3, n_test_defect=3, size=48, seed=i)
    register_preset("regad", "tiny", TINY, image_size=32, source="tests")
    return r

def _files(d): return {p: p.stat().st_mtime_ns for p in sorted(Path(d).rglob("round*.json"))}

def test_reproduce_end_to_end_and_resume(root, tmp_path, capsys):
    out = tmp_path/"regad-mvtec"
    args = ["regad-mvtec", "--preset", "tiny", "--root", str(root), "--category", "bottle", "cable", "--shots", "2",
            "--rounds", "2", "--device", "cpu", "--out", str(out)]
    res = R.cmd_reproduce(_parse(args))
    files = _files(out)
    assert sorted(p.relative_to(out).as_posix() for p in files) == [f"regad/{c}/k2/round0{r}.json" for c in ("bottle", "cable") for r in (0, 1)]
    spec = json.loads((out/"regad"/"bottle"/"run.json").read_text())
    assert spec["meta"] == [str(root/"cable"), str(root/"capsule")] and spec["config"]["epochs"] == 1    # leave-one-out, the preset
    md = (out/"table.md").read_text()
    assert "| bottle | 99.4 |" in md and "| cable | 65.1 |" in md          # the paper's K=2 image AUROC beside ours
    assert "n.r." in md and "test set" in md and "paper*" in md                             # pixel AUROC per category: not reported; footnote
    rows = res["rows"]
    bottle = next(r for r in rows if r["metric"] == "image_auroc" and r["category"] == "bottle")
    assert bottle["rounds"] == 2 and bottle["diff"] == pytest.approx(bottle["ours"] - 99.4)
    assert (out/"paper_vs_ours.png").read_bytes()[:4] == b"\x89PNG"
    assert "table:" in capsys.readouterr().out
    R.cmd_reproduce(_parse(args))                                        # resumed: nothing recomputed
    assert _files(out) == files and (out/"table.md").read_text() == md
    R.cmd_reproduce(_parse([*args[:-6], "--rounds", "3", "--device", "cpu", "--out", str(out)]))
    new = set(_files(out)) - set(files)
    assert sorted(p.name for p in new) == ["round02.json", "round02.json"]

def test_unknown_preset_or_table_fails_before_work(root, tmp_path):
    with pytest.raises(FsadError, match="no preset 'nope'"): R.run_table("regad-mvtec", tmp_path, "nope", root=root)
    with pytest.raises(FsadError, match="unknown table"): R.cmd_reproduce(_parse(["regad-nowhere", "--dry-run"]))
    assert not any(tmp_path.iterdir())
