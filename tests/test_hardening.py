"""Bad input and faults thrown at the library: each case gives one clear error or the correct result.

Downloads and archives are served from a throw-away HTTP server on 127.0.0.1; nothing touches the internet.
"""
import contextlib, functools, http.server, io, json, os, tarfile, threading, warnings, zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsad_nb.core import FsadError, load_json, save_json
from fsad_nb.data import load_mask, make_synthetic_category, MVTecLayout
from fsad_nb.downloads import download, extract, file_sha256
from fsad_nb.converters import _fetch_install
from fsad_nb.detector import get_detector
from fsad_nb import protocol
from fsad_nb.cli import main


# ---------------------------------------------------------------- a server that misbehaves on purpose

class _Flaky(http.server.BaseHTTPRequestHandler):
    "Serves `files`; the first `cut` responses announce the full length but stop half-way; honours `Range` if `ranges`."
    files, cut, ranges, seen = {}, 0, True, []

    def log_message(self, *a): pass

    def do_GET(self):
        body = self.files.get(self.path.lstrip("/"))
        if body is None: self.send_error(404); return
        start, rng = 0, self.headers.get("Range")
        type(self).seen.append(rng)
        if rng and self.ranges: start = int(rng.split("=")[1].split("-")[0])
        part = body[start:]
        self.send_response(206 if start else 200)
        if start: self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(part))); self.end_headers()
        if type(self).cut > 0:
            type(self).cut -= 1; self.wfile.write(part[:len(part) // 2]); self.wfile.flush()
            self.close_connection = True; return
        self.wfile.write(part)


@contextlib.contextmanager
def flaky(files, cut=0, ranges=True):
    handler = type("H", (_Flaky,), dict(files=files, cut=cut, ranges=ranges, seen=[]))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True); t.start()
    try: yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally: srv.shutdown(); srv.server_close(); t.join(5)


BLOB = np.random.default_rng(0).bytes(300_000)


# 1. downloads: complete or not at all
def test_interrupted_download_is_never_kept_as_final(tmp_path):
    with flaky({"blob.bin": BLOB}, cut=10) as (url, _):
        with pytest.raises(FsadError, match="incomplete after 2 attempts"):
            download(f"{url}/blob.bin", tmp_path/"blob.bin", retries=1, chunk=4096)
    assert not (tmp_path/"blob.bin").exists()                       # never under the final name
    assert (tmp_path/"blob.bin.part").exists()                      # kept for the next call to resume


def test_download_resumes_with_range(tmp_path):
    with flaky({"blob.bin": BLOB}, cut=1) as (url, h):
        out = download(f"{url}/blob.bin", tmp_path/"blob.bin", chunk=4096)
    assert out.read_bytes() == BLOB and not (tmp_path/"blob.bin.part").exists()
    assert h.seen[0] is None and h.seen[1].startswith("bytes=")     # the second request asked for the rest only


def test_download_restarts_when_server_cannot_resume(tmp_path):
    with flaky({"blob.bin": BLOB}, cut=1, ranges=False) as (url, _):
        out = download(f"{url}/blob.bin", tmp_path/"blob.bin", sha256=file_sha256_bytes(BLOB), chunk=4096)
    assert out.read_bytes() == BLOB


def file_sha256_bytes(b):
    import hashlib; return hashlib.sha256(b).hexdigest()


def test_half_archive_never_reused_with_keep_archive(tmp_path):
    src = make_synthetic_category(tmp_path/"src", "cat", n_train=3, n_test_good=1, n_test_defect=1, size=32)
    arc = Path(__import__("shutil").make_archive(str(tmp_path/"arc"), "gztar", tmp_path/"src", "cat")).read_bytes()
    with flaky({"arc.tar.gz": arc}, cut=10) as (url, _):
        with pytest.raises(FsadError, match="incomplete"):
            _fetch_install(f"{url}/arc.tar.gz", tmp_path/"root", keep_archive=True)
    assert not (tmp_path/"root"/".downloads"/"arc.tar.gz").exists()
    with flaky({"arc.tar.gz": arc}) as (url, _):                     # the next call resumes and completes
        assert [c.name for c in _fetch_install(f"{url}/arc.tar.gz", tmp_path/"root", keep_archive=True)] == ["cat"]
    assert (tmp_path/"root"/".downloads"/"arc.tar.gz").read_bytes() == arc


def test_md5_checked(tmp_path):
    import hashlib
    with flaky({"f.gz": b"abc"}) as (url, _):
        with pytest.raises(FsadError, match="MD5 mismatch"): download(f"{url}/f.gz", tmp_path/"f.gz", md5="0" * 32)
        assert download(f"{url}/f.gz", tmp_path/"f.gz", md5=hashlib.md5(b"abc").hexdigest()).read_bytes() == b"abc"


# 2. extraction: the library's own check, whatever the Python version
def _chain_tar(path, payload):
    with tarfile.open(path, "w") as t:
        for name, target in (("d1", "."), ("d1/d2", "..")):
            m = tarfile.TarInfo(name); m.type, m.linkname = tarfile.SYMTYPE, target; t.addfile(m)
        m = tarfile.TarInfo("d1/d2/evil.txt"); m.size = len(payload); t.addfile(m, io.BytesIO(payload))


@pytest.mark.parametrize("with_filter", [True, False])
def test_symlink_chain_refused(tmp_path, monkeypatch, with_filter):
    if not with_filter: monkeypatch.delattr(tarfile, "data_filter", raising=False)   # as on 3.10.0-3.10.11, 3.11.0-3.11.3
    _chain_tar(tmp_path/"chain.tar", b"owned")
    with pytest.raises(FsadError, match="points outside"): extract(tmp_path/"chain.tar", tmp_path/"out"/"in")
    assert not list(tmp_path.rglob("evil.txt"))


@pytest.mark.parametrize("links", [[("l", "/etc")], [("a", "b"), ("b", "../..")], [("x", "y/../../z")]])
def test_links_pointing_out_refused_without_filter(tmp_path, monkeypatch, links):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with tarfile.open(tmp_path/"l.tar", "w") as t:
        for name, target in links:
            m = tarfile.TarInfo(name); m.type, m.linkname = tarfile.SYMTYPE, target; t.addfile(m)
    with pytest.raises(FsadError, match="outside"): extract(tmp_path/"l.tar", tmp_path/"out")


def test_links_inside_allowed_without_filter(tmp_path, monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with tarfile.open(tmp_path/"ok.tar", "w") as t:
        m = tarfile.TarInfo("dir/a.txt"); m.size = 2; t.addfile(m, io.BytesIO(b"hi"))
        m = tarfile.TarInfo("dir/link"); m.type, m.linkname = tarfile.SYMTYPE, "a.txt"; t.addfile(m)
    assert (extract(tmp_path/"ok.tar", tmp_path/"out")/"dir"/"link").read_text() == "hi"


def test_truncated_zip_named_as_such(tmp_path):
    with zipfile.ZipFile(tmp_path/"a.zip", "w") as z: z.writestr("x.txt", "x" * 1000)
    (tmp_path/"cut.zip").write_bytes((tmp_path/"a.zip").read_bytes()[:-40])
    with pytest.raises(FsadError, match="cut.zip: truncated or corrupt zip"): extract(tmp_path/"cut.zip", tmp_path/"o")


# ---------------------------------------------------------------- the protocol and the CLI

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_synthetic_category(root, "synthetic", n_train=6, n_test_good=3, n_test_defect=3, size=48, seed=0)
    return root


KW = dict(shots=(1,), rounds=1, image_size=48, progress=False)


def fsad(*args):
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: code = main([str(a) for a in args])
        except SystemExit as e: code = e.code
    return code, out.getvalue(), err.getvalue()


# 3. --set values checked before any work; nothing written
@pytest.mark.parametrize("bad", ["k=abc", "k=1.5", "sigma=foo", "layers=5", "k=0", "sigma=-1"])
def test_bad_set_values(data, tmp_path, bad):
    code, _, err = fsad("run", "--root", data, "--category", "synthetic", "--out", tmp_path/"r", "--set", bad)
    assert code == 2 and err.startswith(f"fsad: error: --set {bad.split('=')[0]}=") and err.count("\n") == 1, err
    assert not (tmp_path/"r").exists()


# 4. method options named like protocol arguments
def test_method_options_do_not_collide(data, tmp_path):
    for method, opts in [("dfd", dict(seed=3, batch_size=2)), ("simplenet", dict(seed=3, batch_size=2))]:
        opts = {**opts, "weights": None, "n_augment": 1, "epochs": 1}
        s = protocol.run_category(method, data, "synthetic", tmp_path/method, options=opts, **KW)
        assert s["by_shots"][1]["rounds"] == 1
        assert load_json(tmp_path/method/"synthetic"/"run.json")["config"]["seed"] == 3
    det = get_detector("tdg", **dict(image_size=32, seed=3))        # TDG's own image_size and seed are options too
    assert (det.config.image_size, det.config.seed) == (32, 3)
    code, _, err = fsad("run", "--method", "tdg", "--root", data, "--category", "synthetic", "--out", tmp_path/"t",
                        "--set", "image_size=abc")
    assert code == 2 and "image_size='abc'" in err


# 5. masks that are not two-valued
def test_soft_and_jpeg_masks(tmp_path):
    ramp = np.tile(np.arange(256, dtype=np.uint8), (8, 1)); Image.fromarray(ramp).save(tmp_path/"ramp.png")
    with pytest.warns(UserWarning, match="ramp.png"): assert load_mask(tmp_path/"ramp.png").mean() == 0.5
    m = np.zeros((96, 96), np.uint8); m[30:60, 20:70] = 255; Image.fromarray(m).save(tmp_path/"m.jpg", quality=70)
    with pytest.warns(UserWarning, match="m.jpg"): area = load_mask(tmp_path/"m.jpg").sum()
    assert abs(area - 1500) / 1500 < 0.05                          # the true area, not 1.8x
    Image.fromarray(m).save(tmp_path/"m.png")
    with warnings.catch_warnings(): warnings.simplefilter("error"); assert load_mask(tmp_path/"m.png").sum() == 1500


# 6. damaged round files: recomputed with a warning naming them; nothing invalid in a summary
@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"null", b"42", b'{"image_auroc": "abc"}',
                                     "7.0", "null-metric"])
def test_damaged_round_files(data, tmp_path, content):
    out = tmp_path/"r"
    protocol.run_category("knn", data, "synthetic", out, weights=None, **KW)
    f = out/"synthetic"/"k1"/"round00.json"
    good = load_json(f)
    if content == "7.0": content = json.dumps({**good, "image_auroc": 7.0}).encode()
    if content == "null-metric": content = json.dumps({**good, "pixel_auroc": None}).encode()
    f.write_bytes(content)
    with pytest.warns(UserWarning, match=f"{f}.*computed again"):
        s = protocol.run_category("knn", data, "synthetic", out, weights=None, **KW)
    assert load_json(f) == {**good, "fit_s": load_json(f)["fit_s"], "predict_s": load_json(f)["predict_s"]}
    for k in protocol.METRICS: assert 0 <= s["by_shots"][1][k]["mean"] <= 1


# 7. raw tracebacks become one line
@pytest.mark.parametrize("args,msg", [(["--image-size", "0"], "--image-size 0"), (["--image-size", "-5"], "--image-size -5"),
                                      (["--image-size", "8"], "at least 32"), (["--batch-size", "0"], "--batch-size 0"),
                                      (["--device", "tpu"], "device='tpu'")])
def test_cli_argument_errors(data, tmp_path, args, msg):
    code, _, err = fsad("run", "--root", data, "--category", "synthetic", "--out", tmp_path/"r", *args)
    assert code == 2 and msg in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_out_is_a_file_or_read_only(data, tmp_path, monkeypatch):
    (tmp_path/"f").write_text("x")
    code, _, err = fsad("run", "--root", data, "--category", "synthetic", "--out", tmp_path/"f", "--set", "weights=None")
    assert code == 2 and "is a file" in err
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).startswith(str(tmp_path/"ro")) else real(p, m))
    (tmp_path/"ro").mkdir()
    code, _, err = fsad("run", "--root", data, "--category", "synthetic", "--out", tmp_path/"ro", "--shots", "1",
                        "--rounds", "1", "--image-size", "48", "--set", "weights=None")
    assert code == 2 and "not writable" in err and err.count("\n") == 1, err


def test_weights_that_are_not_a_checkpoint(data, tmp_path):
    (tmp_path/"w.txt").write_text("hello")
    code, _, err = fsad("run", "--root", data, "--category", "synthetic", "--out", tmp_path/"r", "--set", f"weights={tmp_path/'w.txt'}")
    assert code == 2 and "w.txt: not a PyTorch weights file" in err and err.count("\n") == 1, err


def test_regad_eps_zero_identical_support():
    det = get_detector("regad", weights=None, eps=0.0)
    x = torch.rand(1, 3, 48, 48).expand(2, -1, -1, -1).contiguous()
    with pytest.raises(FsadError, match="singular"): det.fit(x)


# 8. a finished run folder is summarised without writing anything
def test_finished_run_is_not_rewritten(data, tmp_path):
    out = tmp_path/"r"
    protocol.run("knn", data, ["synthetic"], out, weights=None, **KW)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    protocol.run("knn", data, ["synthetic"], out, weights=None, **KW)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_summary_in_read_only_folder_warns(data, tmp_path, monkeypatch):
    out = tmp_path/"r"
    protocol.run_category("knn", data, "synthetic", out, weights=None, **KW)
    (out/"synthetic"/"summary.json").unlink()
    def refuse(*a, **k): raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(protocol, "save_json", refuse)
    with pytest.warns(UserWarning, match="not writable"): s = protocol.summarise(out, "synthetic", [1], 1, "knn")
    assert s["by_shots"][1]["rounds"] == 1


# 9. a failing category is named; the others still run; the exit code says so
def test_failing_category_reported_others_run(data, tmp_path):
    make_synthetic_category(tmp_path, "goodonly", n_train=4, n_test_good=2, n_test_defect=1, size=48, seed=1)
    for d in (tmp_path/"goodonly"/"test").iterdir():
        if d.name != "good": __import__("shutil").rmtree(d)
    (tmp_path/"synthetic").symlink_to(data/"synthetic")
    code, out, err = fsad("run", "--root", tmp_path, "--category", "goodonly", "synthetic", "--out", tmp_path/"r",
                          "--shots", "1", "--rounds", "1", "--image-size", "48", "--set", "weights=None")
    assert code == 1 and str(tmp_path/"goodonly"/"test") in err and "| synthetic |" in out, (out, err)


# 10. a broken image anywhere in the pool stops the run before any round is written
def test_corrupt_middle_of_jpeg_stops_before_round0(tmp_path):
    make_synthetic_category(tmp_path, "c", n_train=5, n_test_good=2, n_test_defect=2, size=48, seed=2)
    good = tmp_path/"c"/"train"/"good"
    for p in sorted(good.glob("*.png")):
        Image.open(p).convert("RGB").resize((96, 96)).save(p.with_suffix(".jpg"), quality=90); p.unlink()
    victim = sorted(good.glob("*.jpg"))[-1]
    b = bytearray(victim.read_bytes()); mid = len(b) // 2; b[mid:mid + 200] = b"\xff" * 200   # header and end intact
    victim.write_bytes(bytes(b))
    with pytest.raises(FsadError, match=victim.name):
        protocol.run_category("knn", tmp_path, "c", tmp_path/"r", weights=None, shots=(1, 2), rounds=3, image_size=48, progress=False)
    assert not list((tmp_path/"r").rglob("round*.json"))


def test_images_in_sub_folders_reported(tmp_path):
    make_synthetic_category(tmp_path, "c", n_train=3, n_test_good=2, n_test_defect=2, size=32, seed=2)
    sub = tmp_path/"c"/"test"/"good"/"more"; sub.mkdir()
    Image.new("RGB", (32, 32)).save(sub/"x.png")
    with pytest.warns(UserWarning, match="more: 1 images in a sub-folder are not read"): MVTecLayout(tmp_path, "c", "test")


# 11. NaN / inf refused by every method's fit and predict
@pytest.mark.parametrize("method", ["knn", "regad", "dfd", "simplenet", "tdg"])
def test_nan_inf_refused(method):
    det = get_detector(method, weights=None) if method != "tdg" else get_detector("tdg")
    x = torch.rand(2, 3, 48, 48); x[1, 0, 3, 3] = float("nan")
    with pytest.raises(FsadError, match=r"\[1\] hold NaN or inf"): det.fit(x)
    det.fitted = True                                              # predict checks its input before using any state
    x[1, 0, 3, 3] = float("inf")
    with pytest.raises(FsadError, match=r"\[1\] hold NaN or inf"): det.predict(x)


# ================================================================ second round: checkpoints that run code, odd images,
# output folders with one owner, Ctrl-C, the data home, Ray's processes

import csv, re, shutil, signal, subprocess, sys, time
from fsad_nb.detector import Detector
from fsad_nb.learner import load_checkpoint
from fsad_nb.deploy import fit_model, predict_images, load_model, overlay_figure
from fsad_nb import deploy


@pytest.fixture(scope="module")
def tile():
    "The real magnetic-tile category of the data home (tests never download)."
    from fsad_nb.datasets import dataset
    try: return dataset("magnetic_tile", download=False)
    except FsadError as e: pytest.skip(str(e))


def _goods(tile, n): return sorted((tile/"train"/"good").iterdir())[:n]
def _cracks(tile, n): return sorted((tile/"test"/"crack").iterdir())[:n]


@pytest.fixture(scope="module")
def tile_model(tile, tmp_path_factory):
    return fit_model("knn", _goods(tile, 3), tmp_path_factory.mktemp("tm")/"tile.fsad", options={"weights": None},
                     image_size=64, progress=False)


class _Payload:
    "Unpickled without weights_only, this creates the file `marker` (the way a crafted file would run any code)."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))


def _evil(path, marker, rec:dict) -> Path:
    torch.save({**rec, "payload": _Payload(marker)}, path); return Path(path)


# 1. no loader runs code from a file
def test_crafted_pickles_never_run(tmp_path):
    marker = tmp_path/"ran"
    evil = _evil(tmp_path/"det.fsad", marker, {"method": "knn", "config": {}, "state": {}, "fsad_nb": "0", "format": 1})
    unsafe = f"not a fsad_nb checkpoint \\(or unsafe\\): {re.escape(str(evil))} \\(it asks to run posix.system, refused\\)"
    with pytest.raises(FsadError, match=unsafe): Detector.load(evil)                      # Detector.load
    with pytest.raises(FsadError, match=unsafe): load_model(evil)                          # fit_model's model files
    ts = tmp_path/"evil.pt"; shutil.copy(evil, ts)                                        # posing as an exported graph
    with zipfile.ZipFile(ts, "a") as z: z.writestr("det/extra/fsad_nb.json", "{}")
    with pytest.raises(FsadError, match="evil.pt"): load_model(ts)
    with pytest.raises(FsadError, match="det.fsad"): get_detector("knn", weights=str(evil))   # --set weights=
    ck = _evil(tmp_path/"ck.pt", marker, {"key": {}, "epoch": 1, "history": []})       # a training checkpoint
    with pytest.warns(UserWarning, match="not a fsad_nb checkpoint .* training starts again from epoch 0"):
        assert load_checkpoint(ck, {}, net=torch.nn.Linear(2, 2)) is None
    (tmp_path/"noise.fsad").write_bytes(np.random.default_rng(0).bytes(4000))            # random bytes: one line too
    with pytest.raises(FsadError, match="not a fsad_nb checkpoint \\(or unsafe\\): .*noise.fsad"): Detector.load(tmp_path/"noise.fsad")
    assert not marker.exists()


def test_resumed_meta_run_with_crafted_checkpoint_recomputes(data, tmp_path):
    make_synthetic_category(tmp_path, "other", n_train=4, n_test_good=1, n_test_defect=1, size=48, seed=5)
    out, marker = tmp_path/"r", tmp_path/"ran"
    (out/"synthetic"/"meta").mkdir(parents=True)
    ck = _evil(out/"synthetic"/"meta"/"regad.pt", marker, {"key": {}, "epoch": 1, "history": []})
    code, _, err = fsad("run", "--method", "regad", "--root", data, "--category", "synthetic", "--meta", tmp_path/"other",
                        "--out", out, "--shots", "1", "--rounds", "1", "--image-size", "48", "--device", "cpu", "--set",
                        "weights=None", "epochs=1", "iters_per_epoch=1", "batch_size=2", "train_size=48")
    assert code == 0 and f"fsad: warning: not a fsad_nb checkpoint (or unsafe): {ck}" in err and "Traceback" not in err, err
    assert not marker.exists() and torch.load(ck, weights_only=True)["epoch"] == 1          # trained again, saved safely


# 2. thin and tiny images at predict: a row each, the batch goes on; pictures of any shape
def test_predict_thin_and_tiny_images(tile, tile_model, tmp_path):
    inp = tmp_path/"in"; inp.mkdir()
    for p in _cracks(tile, 3): shutil.copy(p, inp)
    im = Image.open(_cracks(tile, 1)[0]).convert("RGB")
    for w, h in ((1, 1), (1, 60), (60, 1), (31, 200)): im.resize((w, h)).save(inp/f"thin_{w}x{h}.png")
    code, out, err = fsad("predict", tile_model, inp, "--out", tmp_path/"p", "--device", "cpu")
    assert code == 0 and "Traceback" not in err, err
    rows = list(csv.DictReader(open(tmp_path/"p"/"scores.csv")))
    assert [Path(r["path"]).name for r in rows] == sorted(p.name for p in inp.iterdir())       # input order, errors in place
    assert {Path(r["path"]).name for r in rows if r["error"]} == {"thin_1x1.png", "thin_1x60.png", "thin_60x1.png", "thin_31x200.png"}
    assert all("images must be at least 32 px" in r["error"] for r in rows if r["error"])
    assert all((tmp_path/"p"/r["heatmap"]).is_file() for r in rows if r["score"])
    for shape in ((1, 60), (60, 1), (1, 1), (2, 2)):                      # the picture writer, flagged everywhere
        mk = np.ones(shape, bool); overlay_figure(np.zeros((*shape, 3), np.uint8), mk * 2.0, mk, (0, 1), 0.5).savefig(io.BytesIO())


def test_picture_failure_never_loses_scores(tile, tile_model, tmp_path, monkeypatch):
    def broken(*a, **k): raise RuntimeError("no room for pictures")
    monkeypatch.setattr(deploy, "overlay_figure", broken)
    res = predict_images(tile_model, _cracks(tile, 3), tmp_path/"p", progress=False)
    rows = list(csv.DictReader(open(res.csv)))
    assert len(rows) == 3 and all(r["score"] and "pictures not written (RuntimeError: no room" in r["error"] for r in rows)
    assert len(res) == 3 and len(res.picture_errors) == 3 and "3 without pictures" in res.summary()
    m = load_model(tile_model); calls = []
    def interrupted(x, batch_size=32):                                  # Ctrl-C in the second batch
        calls.append(1)
        if len(calls) == 2: raise KeyboardInterrupt
        return m.detector.predict(x, batch_size)
    m.score = interrupted
    with pytest.raises(KeyboardInterrupt): predict_images(m, _cracks(tile, 3), tmp_path/"q", batch_size=2, progress=False)
    assert len(list(csv.DictReader(open(tmp_path/"q"/"scores.csv")))) == 2   # the first batch is on disk


# 3. a 1x1 image never enters a support set
def test_tiny_support_image_refused(tile, tmp_path):
    sup = tmp_path/"sup"; sup.mkdir()
    for p in _goods(tile, 3): shutil.copy(p, sup)
    Image.open(_goods(tile, 1)[0]).convert("RGB").resize((1, 1)).save(sup/"dot.png")
    code, _, err = fsad("fit", "--support", sup, "--set", "weights=None", "--image-size", "64", "--device", "cpu", "--out", tmp_path/"m.fsad")
    assert code == 2 and f"{sup/'dot.png'}: 1x1 px; images must be at least 32 px on each side" in err and err.count("\n") == 1, err
    assert not (tmp_path/"m.fsad").exists()


# 4. one predict job per output folder
def test_predict_out_owned_by_one_job(tile, tile_model, tmp_path):
    a, b = _cracks(tile, 2), _goods(tile, 1)
    assert fsad("predict", tile_model, *a, "--out", tmp_path/"p", "--device", "cpu")[0] == 0
    before = (tmp_path/"p"/"scores.csv").read_bytes()
    code, _, err = fsad("predict", tile_model, *b, "--out", tmp_path/"p", "--device", "cpu")
    assert code == 2 and "not empty" in err and "--overwrite" in err and (tmp_path/"p"/"scores.csv").read_bytes() == before
    code, _, err = fsad("predict", tile_model, *b, "--out", tmp_path/"p", "--device", "cpu", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path/"p").rglob("*.png")) == [f"{b[0].stem}.png"] * 2     # no stale pictures
    assert [Path(r["path"]) for r in csv.DictReader(open(tmp_path/"p"/"scores.csv"))] == b


def test_predict_mirrors_input_folders(tile, tile_model, tmp_path):
    res = predict_images(tile_model, [tile/"test"/"crack", tile/"test"/"good"], tmp_path/"p", progress=False, pictures=False)
    assert any(n.startswith("crack/") for n in res.names) and any(n.startswith("good/") for n in res.names)
    assert not any(re.search(r"-\d+$", n) for n in res.names)


# 5. fit --out never replaces an input or a file that is not a model
def test_fit_out_never_overwrites_inputs(tile, tmp_path, monkeypatch):
    sup = tmp_path/"sup"; sup.mkdir()
    for p in _goods(tile, 3): shutil.copy(p, sup)
    victim = sorted(sup.iterdir())[0]; raw = victim.read_bytes()
    base = ["fit", "--support", sup, "--set", "weights=None", "--image-size", "64", "--device", "cpu", "--out"]
    code, _, err = fsad(*base, victim)
    assert code == 2 and "names an image" in err and victim.read_bytes() == raw, err
    (tmp_path/"notes.txt").write_text("mine")
    code, _, err = fsad(*base, tmp_path/"notes.txt")
    assert code == 2 and "exists and is not an fsad_nb model file" in err and (tmp_path/"notes.txt").read_text() == "mine"
    real = os.access                                                      # a read-only folder: refused before the fit
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(tmp_path/"ro") else real(p, m))
    (tmp_path/"ro").mkdir()
    code, _, err = fsad(*base, tmp_path/"ro"/"m.fsad")
    assert code == 2 and f"{tmp_path/'ro'}: not writable" in err and ".tmp" not in err, err


# 6. one writer per run folder; a resumed run must have the same config
def test_second_writer_and_other_config_refused(data, tmp_path):
    from filelock import FileLock
    out = tmp_path/"r"; out.mkdir()
    base = ["run", "--root", data, "--category", "synthetic", "--out", out, "--shots", "1", "--rounds", "1",
            "--image-size", "48", "--device", "cpu", "--set", "weights=None"]
    with FileLock(out/".fsad.lock"):                                      # held as another process would hold it
        code, _, err = fsad(*base)
    assert code == 2 and "another fsad run is writing into this folder" in err and not (out/"synthetic").exists(), err
    assert fsad(*base)[0] == 0
    code, _, err = fsad(*base, "sigma=2.0", "k=2")
    assert code == 2 and "config.k: 1 -> 2; config.sigma: 4.0 -> 2.0" in err, err


# 7. Ctrl-C: one line, the finished rounds summarised, exit code 130
def test_ctrl_c_ends_run_in_one_line(data, tmp_path):
    out = tmp_path/"r"
    cmd = [sys.executable, "-c", "import sys; from fsad_nb.cli import main; sys.exit(main())", "run", "--root", str(data),
           "--category", "synthetic", "--out", str(out), "--shots", "1", "2", "--rounds", "30", "--image-size", "48",
           "--device", "cpu", "--set", "weights=None"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    t0 = time.time()
    while not list(out.glob("synthetic/k*/round*.json")) and time.time() - t0 < 240 and p.poll() is None: time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, err
    n = len(list(out.glob("synthetic/k*/round*.json")))
    assert err.strip().splitlines()[-1] == f"fsad: interrupted after {n} rounds; rerun the same command to resume", err
    s = load_json(out/"synthetic"/"summary.json")
    assert sum(r["rounds"] for r in s["by_shots"].values()) == n and (out/"summary.md").exists()


# 8. the data home says which folder is read-only, by testing it
def test_data_list_reports_read_only(tmp_path, monkeypatch):
    a, b = tmp_path/"a", tmp_path/"b"; a.mkdir(); b.mkdir()
    monkeypatch.setenv("FSAD_DATA", f"{a}:{b}")
    assert fsad("data", "list")[1].splitlines()[0] == f"{a} (writable: downloads go here)"
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).startswith(str(tmp_path)) else real(p, m))
    lines = fsad("data", "list")[1].splitlines()
    assert "read-only for you" in lines[0] and any(l.startswith(f"{b} (searched, never written; read-only") for l in lines)


# 9. a local Ray belongs to the run that started it
def test_local_ray_shut_down_with_the_run(data, tmp_path, monkeypatch):
    calls = []
    class FakeRay:
        up = False
        def is_initialized(self): return self.up
        def init(self, **kw): calls.append(("init", kw)); self.up = True
        def shutdown(self): calls.append(("shutdown", {})); self.up = False
        def put(self, x): return x
        def remote(self, **kw): raise RuntimeError("the cluster went away")
    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    with pytest.raises(RuntimeError, match="went away"):
        protocol.run("knn", data, ["synthetic"], tmp_path/"r", engine="ray", workers=1, weights=None, **KW)
    assert calls[0][0] == "init" and calls[0][1]["include_dashboard"] is False and calls[-1][0] == "shutdown"


# weaker messages made precise
def test_precise_messages(data, tile, tile_model, tmp_path):
    code, _, err = fsad("fit", "--support", data/"synthetic", "--shots", "1", "--round", "-1", "--out", tmp_path/"m.fsad")
    assert code == 2 and "--round -1: must be >= 0" in err, err
    code, _, err = fsad("run", "--root", data, "--category", "synthetic", "--out", tmp_path/"r", "--set", "sigma=1e400")
    assert code == 2 and "--set sigma=1e400: not a finite number" in err, err
    inp = tmp_path/"in"; (inp/"more").mkdir(parents=True)                 # sub-folders and dangling links are reported
    for p in _cracks(tile, 2): shutil.copy(p, inp)
    shutil.copy(_cracks(tile, 1)[0], inp/"more"/"x.jpg"); (inp/"lost.jpg").symlink_to(tmp_path/"gone.jpg")
    code, out, err = fsad("predict", tile_model, inp, "--out", tmp_path/"p", "--device", "cpu")
    assert code == 0 and "fsad: warning:" in err and "1 images in sub-folders not read (more)" in err and "--recursive" in err, err
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(tmp_path/"p"/"scores.csv"))}
    assert "a link to" in rows["lost.jpg"]["error"] and "x.jpg" not in rows
    code, out, err = fsad("predict", tile_model, inp, "--out", tmp_path/"p2", "--device", "cpu", "--recursive")
    assert code == 0 and "x.jpg" in {Path(r["path"]).name for r in csv.DictReader(open(tmp_path/"p2"/"scores.csv"))}
    shutil.copytree(data/"synthetic", tmp_path/"nogt"/"synthetic"); shutil.rmtree(tmp_path/"nogt"/"synthetic"/"ground_truth")
    with pytest.raises(FsadError, match="LABELS_ONLY"): MVTecLayout(tmp_path/"nogt", "synthetic", "test")
