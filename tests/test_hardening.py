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
from fsad_nb.data import download, extract, file_sha256, load_mask, make_synthetic_category, MVTecLayout, _fetch_install
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
