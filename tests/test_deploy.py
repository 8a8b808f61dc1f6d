"""fit_model / predict_images / export_model: the model file, the label-free threshold, folders of awkward images, bad
model files, and exported graphs (ONNX, TorchScript) against PyTorch on real magnetic tiles for every exportable method.

Small sizes throughout: a random-weight backbone on a 64 px synthetic category for the plumbing, ImageNet weights on a
few 64 px magnetic tiles for the parity of the exported graphs.
"""
import contextlib, csv, io, json, re, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsad_nb.core import FsadError
from fsad_nb.data import MVTecLayout, load_image, load_images, make_synthetic_category
from fsad_nb.detector import get_detector
from fsad_nb.fewshot import support_sets_for
from fsad_nb import deploy
from fsad_nb.cli import main
from fsad_nb.deploy import (fit_model, load_model, predict_images, export_model, support_paths, holdout_scores,
                            fit_with_threshold, graph_module, MODEL_FORMAT)

TINY = {"weights": None}
SIZE = 64


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_synthetic_category(root, "synthetic", n_train=8, n_test_good=4, n_test_defect=4, size=SIZE, seed=0)
    return root/"synthetic"


@pytest.fixture(scope="module")
def model_file(syn, tmp_path_factory):
    return fit_model("knn", syn, tmp_path_factory.mktemp("m")/"part.fsad", shots=4, options=TINY, image_size=SIZE, progress=False)


@pytest.fixture(scope="module")
def tiles():
    "A few real magnetic tiles (good and defective), or skip where the data home has none (tests never download)."
    from fsad_nb.datasets import dataset
    try: mt = dataset("magnetic_tile", download=False)
    except FsadError as e: pytest.skip(str(e))
    test = MVTecLayout(mt.parent, mt.name, "test", size=None)
    kinds = np.array(test.defect_types)
    return mt, [test.paths[i] for t in ("good", "crack", "blowhole") for i in np.where(kinds == t)[0][:2]]


# ------------------------------------------------------------------ support and threshold

def test_support_draw_is_the_protocols(syn, tmp_path):
    pool = MVTecLayout(syn.parent, syn.name, "train", size=None).paths
    drawn = support_sets_for(tmp_path, pool, shots=(3,), rounds=3)[3]
    for r in range(3): assert support_paths(syn, shots=3, round=r) == [pool[i] for i in drawn[r]]
    assert support_paths([syn/"train"/"good"]) == pool
    with pytest.raises(FsadError, match="nowhere"): support_paths(syn/"nowhere")


def test_holdout_threshold_is_max_of_leave_one_out(syn):
    x = load_images(support_paths(syn, shots=4), SIZE)
    det = get_detector("knn", **TINY)                                # one random backbone for all fits below
    loo = [float(det.fit(x[[j for j in range(4) if j != i]]).predict(x[i:i + 1])[0][0]) for i in range(4)]
    thr = fit_with_threshold(det, x)
    assert thr["image"] == pytest.approx(max(loo), rel=1e-5) and thr["pixel"] == pytest.approx(thr["image"], rel=1e-6)
    assert det.predict(x)[0].max() < 0.05 * thr["image"]          # then fitted on all four: its own patches score ~0
    s1, A1 = holdout_scores(det, x[:1])                             # K = 1: the two mirror images
    assert s1.shape == (2,) and A1.shape == (2, SIZE, SIZE)


def test_model_file_roundtrip(model_file, syn):
    m = load_model(model_file)
    rec = torch.load(model_file, weights_only=True)
    assert rec["format"] == MODEL_FORMAT and rec["method"] == "knn" and rec["image_size"] == SIZE
    assert [Path(p).name for p in rec["support"]] == [p.name for p in support_paths(syn, shots=4)]
    x = load_images(sorted((syn/"test").rglob("*.png")), SIZE)
    det = get_detector("knn", **TINY); det.set_state(rec["state"]); det.fitted = True
    np.testing.assert_allclose(m.score(x)[0], det.predict(x)[0], rtol=1e-6)


# ------------------------------------------------------------------ predict_images

def _awkward_folder(syn, d:Path) -> Path:
    d.mkdir()
    for p in sorted((syn/"test").rglob("*.png")): (d/f"{p.parent.name}_{p.name}").write_bytes(p.read_bytes())
    rgb = np.asarray(load_image(next((syn/"train"/"good").iterdir())))
    Image.fromarray(rgb[..., 1]).save(d/"grey.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(d/"rgba.png")
    Image.fromarray(rgb[..., 2].astype(np.uint16) * 257).save(d/"deep.png")
    b = io.BytesIO(); Image.fromarray(rgb).save(b, format="JPEG"); (d/"cut.jpg").write_bytes(b.getvalue()[:200])
    (d/"fake.png").write_bytes(b"\x89PNG not really"); (d/"zero.jpg").write_bytes(b"")
    return d


def test_predict_folder_of_awkward_images(model_file, syn, tmp_path):
    d = _awkward_folder(syn, tmp_path/"in")
    res = predict_images(model_file, d, tmp_path/"out", batch_size=3, progress=False)
    rows = list(csv.DictReader(open(tmp_path/"out"/"scores.csv")))
    assert len(rows) == len(list(d.iterdir()))
    assert sorted(Path(r["path"]).name for r in rows if r["error"]) == ["cut.jpg", "fake.png", "zero.jpg"]
    assert all(Path(r["path"]).name in r["error"] for r in rows if r["error"])        # each error names its file
    assert len(res) == len(rows) - 3 and set(res.errors) == {r["path"] for r in rows if r["error"]}
    assert (res.decisions == res.masks.reshape(len(res), -1).any(1)).all()             # flagged <=> mask not empty
    for r in rows:
        if r["error"]: continue
        assert r["decision"] in ("normal", "anomalous")
        mask = Image.open(tmp_path/"out"/r["mask"])
        assert mask.size == Image.open(r["path"]).size and set(np.unique(np.asarray(mask))) <= {0, 255}
        assert Image.open(tmp_path/"out"/r["heatmap"]).format == "PNG"
    fig = res.show(n=4); assert len(fig.axes) >= 4


def test_whole_job_errors_come_before_any_write(model_file, syn, tmp_path):
    (tmp_path/"empty").mkdir(); out = tmp_path/"out"
    with pytest.raises(FsadError, match="empty: no images"): predict_images(model_file, tmp_path/"empty", out, progress=False)
    with pytest.raises(FsadError, match="missing.png"): predict_images(model_file, [syn/"train"/"good", tmp_path/"missing.png"], out, progress=False)
    assert not out.exists()
    res = predict_images(model_file, syn, out, recursive=True, pictures=False, keep_maps=False, progress=False)
    assert len(res) == 8 + 8 + 4 and res.maps is None and not (out/"heatmaps").exists()


def test_repeated_names_get_distinct_pictures(model_file, syn, tmp_path):
    a, b = tmp_path/"a", tmp_path/"b"; a.mkdir(); b.mkdir()
    src = next((syn/"train"/"good").iterdir())
    for d in (a, b): (d/"x.png").write_bytes(src.read_bytes())
    res = predict_images(model_file, [a, b], tmp_path/"out", progress=False)
    rows = list(csv.DictReader(open(res.csv)))
    assert [r["mask"] for r in rows] == ["masks/a/x.png", "masks/b/x.png"]   # the input folders mirrored
    assert res.scores[0] == pytest.approx(res.scores[1])


def test_bad_model_files(model_file, syn, tmp_path):
    raw = model_file.read_bytes()
    (tmp_path/"cut.fsad").write_bytes(raw[:len(raw) // 3])
    (tmp_path/"junk.fsad").write_bytes(b"hello")
    rec = torch.load(model_file, weights_only=True); rec.update(format=MODEL_FORMAT + 1, fsad_nb="99.0")
    torch.save(rec, tmp_path/"new.fsad")
    load_model(model_file).detector.save(tmp_path/"ckpt.pt")
    for name, msg in (("cut.fsad", "not a fsad_nb checkpoint"), ("junk.fsad", "not a fsad_nb checkpoint"),
                      ("new.fsad", "written by fsad_nb 99.0"), ("ckpt.pt", "no threshold"), ("absent.fsad", "no such model")):
        with pytest.raises(FsadError, match=msg) as e: load_model(tmp_path/name)
        assert name in str(e.value)
    with pytest.raises(FsadError, match="k=100000"):                 # fails half-way: the old model file stays
        fit_model("knn", syn, model_file, options={"k": 100000, **TINY}, image_size=SIZE, progress=False)
    assert model_file.read_bytes() == raw
    with pytest.raises(FsadError, match="normalise='train'"):
        fit_model("dfd", syn, tmp_path/"d.fsad", options={"normalise": "test", **TINY}, image_size=SIZE)


# ------------------------------------------------------------------ export

def _gap(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("method", ["knn", "regad", "simplenet", "dfd", "uniad"])
def test_exported_graphs_match_pytorch_on_real_tiles(method, tiles, tmp_path):
    mt, paths = tiles
    opts = {"dfd": {"n_augment": 2, "epochs": 1}, "simplenet": {"n_augment": 2, "epochs": 1},
            "uniad": {"image_size": SIZE, "neighbour": 3}}.get(method, {})    # UniAD: a 4x4 token grid at 64 px
    f = fit_model(method, mt, tmp_path/"m.fsad", shots=2, options=opts, image_size=SIZE,
                  threshold="holdout" if method == "knn" else 1.0, progress=False)
    m = load_model(f)
    x = torch.cat([deploy._decode(p, SIZE)[0] for p in paths])
    s0, A0 = m.detector.predict(x)
    for fmt in ("onnx", "torchscript"):
        e = load_model(export_model(f, fmt, tmp_path/f"m.{fmt}"))
        assert (e.kind, e.method, e.image_size, e.threshold) == (fmt, method, SIZE, m.threshold)
        for batch in (len(x), 1):                                   # any batch size, not only the traced one
            s, A = e.score(x, batch)
            assert _gap(s, s0) < 1e-4 and _gap(A, A0) < 1e-4, (fmt, batch, _gap(s, s0), _gap(A, A0))
    r0 = predict_images(f, paths, tmp_path/"py", pictures=False, progress=False)
    r1 = predict_images(tmp_path/"m.onnx", paths, tmp_path/"ox", pictures=False, progress=False)
    assert (r0.decisions == r1.decisions).all() and _gap(r1.scores, r0.scores) < 1e-4


def test_tdg_and_graph_inputs_are_refused(model_file, tmp_path):
    with pytest.raises(FsadError, match="tdg cannot be exported"): graph_module(get_detector("tdg"))
    out = io.StringIO()                                               # `fsad export` prints the parity it measured
    with contextlib.redirect_stdout(out): assert main(["export", str(model_file), "--out", str(tmp_path/"p.onnx")]) == 0
    assert re.fullmatch(rf"{re.escape(str(tmp_path/'p.onnx'))}\nparity with PyTorch on 3 random images: largest relative "
                        r"difference \S+ \(tolerance 0.0001\)\n", out.getvalue()), out.getvalue()
    onnx = tmp_path/"p.onnx"
    with pytest.raises(FsadError, match="not an onnx graph"): export_model(onnx, "torchscript", tmp_path/"p.pt")
    with pytest.raises(FsadError, match="format='tflite'"): export_model(model_file, "tflite")
    (tmp_path/"cut.onnx").write_bytes(onnx.read_bytes()[:3000])
    with pytest.raises(FsadError, match="cut.onnx"): load_model(tmp_path/"cut.onnx")


def test_onnx_runs_without_the_library(model_file, syn, tmp_path):
    "onnxruntime and numpy alone score images and decide, with the threshold read from the file's metadata."
    onnx = export_model(model_file, "onnx", tmp_path/"p.onnx")
    x = load_images(sorted((syn/"test").rglob("*.png")), SIZE).numpy()
    np.save(tmp_path/"x.npy", x)
    code = f"""
import json, sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession({str(onnx)!r}, providers=["CPUExecutionProvider"])
meta = json.loads(s.get_modelmeta().custom_metadata_map["fsad_nb"])
scores, maps = s.run(None, {{"images": np.load({str(tmp_path/'x.npy')!r})}})
assert not any(m.startswith("fsad_nb") or m == "torch" for m in sys.modules)
print(json.dumps({{"scores": scores.tolist(), "flags": (scores > meta["threshold"]["image"]).tolist()}}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    s0 = load_model(model_file).score(torch.as_tensor(x))[0]
    assert _gap(out["scores"], s0) < 1e-4
    assert out["flags"] == list(s0 > load_model(model_file).threshold["image"])
