"""Downloaders and converters of `fsad_nb.data`, exercised against a throw-away HTTP server on 127.0.0.1.

Every archive is built here from the synthetic generator or tiny random images (fake VisA and DAGM trees included);
nothing touches the internet.
"""
import io, os, shutil, tarfile, zipfile
from pathlib import Path

import numpy as np
import pytest

from fsad_nb.core import FsadError
from fsad_nb.data import MVTecLayout, list_categories, make_synthetic_category
from fsad_nb.downloads import file_sha256, download, extract
from fsad_nb.converters import download_mvtec_ad, download_mpdd, download_visa, download_dagm, visa_to_mvtec, dagm_to_mvtec
from fsad_nb.testing import local_server, fake_visa, fake_dagm


@pytest.fixture
def server(tmp_path):
    "(folder served, base URL) of a local HTTP server on a free port, running in a background thread."
    folder = tmp_path/"served"; folder.mkdir()
    with local_server(folder) as url: yield folder, url


def _synthetic(root, name, seed=0):
    return make_synthetic_category(root, name, n_train=4, n_test_good=2, n_test_defect=3, size=32, seed=seed)


def _pack(src_root, base_dir, archive_base, fmt):
    "shutil.make_archive of `src_root/base_dir` (the folder name kept inside the archive); returns the archive path."
    return Path(shutil.make_archive(str(archive_base), fmt, src_root, base_dir))


def _no_temp_files(folder):
    return not [p for p in Path(folder).rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]


# ---------------------------------------------------------------- download / extract

def test_download_verifies_and_skips_present_file(server, tmp_path):
    folder, url = server
    data = np.random.default_rng(0).bytes(3_000_000)                   # > 1 chunk
    (folder/"blob.bin").write_bytes(data)
    h = file_sha256(folder/"blob.bin")
    out = download(f"{url}/blob.bin", tmp_path/"dl"/"blob.bin", sha256=h)
    assert out.read_bytes() == data and file_sha256(out) == h
    (folder/"blob.bin").unlink()                                       # gone from the server:
    assert download(f"{url}/blob.bin", out, sha256=h) == out            # present with the right hash -> not fetched
    (tmp_path/"dl2").mkdir(); (folder/"x.bin").write_bytes(b"abc")
    assert download(f"{url}/x.bin", tmp_path/"dl2").name == "x.bin"     # a folder as dest: the URL's file name


def test_wrong_checksum_raises_and_leaves_nothing(server, tmp_path):
    folder, url = server
    (folder/"a.tar.gz").write_bytes(b"not what you expected")
    actual, wrong = file_sha256(folder/"a.tar.gz"), "ab" * 32
    with pytest.raises(FsadError) as e: download(f"{url}/a.tar.gz", tmp_path/"a.tar.gz", sha256=wrong)
    msg = str(e.value)
    assert "a.tar.gz" in msg and wrong in msg and actual in msg
    assert not (tmp_path/"a.tar.gz").exists() and _no_temp_files(tmp_path)


def test_present_file_with_wrong_hash_is_fetched_again(server, tmp_path):
    folder, url = server
    (folder/"f.bin").write_bytes(b"right"); (tmp_path/"f.bin").write_bytes(b"stale")
    download(f"{url}/f.bin", tmp_path/"f.bin", sha256=file_sha256(folder/"f.bin"))
    assert (tmp_path/"f.bin").read_bytes() == b"right"


def test_http_error_names_url(server, tmp_path):
    _, url = server
    with pytest.raises(FsadError, match="missing.zip"): download(f"{url}/missing.zip", tmp_path/"m.zip")


@pytest.mark.parametrize("fmt", ["gztar", "xztar", "zip", "tar"])
def test_extract_formats(tmp_path, fmt):
    _synthetic(tmp_path/"src", "cat")
    arc = _pack(tmp_path/"src", "cat", tmp_path/"arc", fmt)
    extract(arc, tmp_path/"out")
    assert len(MVTecLayout(tmp_path/"out", "cat", "test")) == 5


def test_extract_refuses_path_traversal(tmp_path):
    (tmp_path/"f.txt").write_text("x")
    with tarfile.open(tmp_path/"dots.tar", "w") as t: t.add(tmp_path/"f.txt", arcname="a/../../up.txt")
    absolute = tarfile.TarInfo("/tmp/abs_fsad_test.txt"); absolute.size = 0      # tarfile.add would strip the "/"
    with tarfile.open(tmp_path/"abs.tar", "w") as t: t.addfile(absolute, io.BytesIO(b""))
    link = tarfile.TarInfo("innocent"); link.type, link.linkname = tarfile.SYMTYPE, "../../etc"
    with tarfile.open(tmp_path/"link.tar", "w") as t: t.addfile(link)
    with zipfile.ZipFile(tmp_path/"dots.zip", "w") as z: z.writestr("../up.txt", "x")
    for name in ["dots.tar", "abs.tar", "link.tar", "dots.zip"]:
        with pytest.raises(FsadError, match="outside"): extract(tmp_path/name, tmp_path/"out")
    assert not (tmp_path/"up.txt").exists() and not list((tmp_path/"out").iterdir())


def test_extract_corrupt_archive(tmp_path):
    _synthetic(tmp_path/"src", "cat")
    arc = _pack(tmp_path/"src", "cat", tmp_path/"arc", "xztar")
    cut = tmp_path/"cut.tar.xz"; cut.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    with pytest.raises(FsadError, match="cut.tar.xz"): extract(cut, tmp_path/"out")


# ---------------------------------------------------------------- MVTec AD, MPDD

def test_mvtec_per_category_archives(server, tmp_path):
    folder, url = server
    for c, seed in [("bottle", 1), ("screw", 2)]:
        _synthetic(tmp_path/"src", c, seed); _pack(tmp_path/"src", c, folder/c, "xztar")
    hashes = {c: file_sha256(folder/f"{c}.tar.xz") for c in ("bottle", "screw")}
    root = tmp_path/"mvtec"
    cats = download_mvtec_ad(root, ["bottle", "screw"], base_url=url + "/{category}.tar.xz", sha256=hashes)
    assert cats == [root/"bottle", root/"screw"] and list_categories(root) == ["bottle", "screw"]
    ds = MVTecLayout(root, "screw", "test", size=32)
    assert len(ds) == 5 and ds.labels.sum() == 3 and all((ds[i]["mask"].sum() > 0) == ds[i]["label"] for i in range(5))
    assert not list((root/".downloads").iterdir())                    # archives removed after unpacking
    for p in folder.iterdir(): p.unlink()
    assert download_mvtec_ad(root, ["bottle", "screw"], base_url=url + "/{category}.tar.xz") == cats   # present: skipped


def test_mvtec_whole_archive_installs_only_requested(server, tmp_path):
    folder, url = server
    top = tmp_path/"src"/"mvtec_anomaly_detection"
    for i, c in enumerate(["bottle", "cable", "wood"]): _synthetic(top, c, i)
    (top/"readme.txt").write_text("license")
    arc = _pack(tmp_path/"src", "mvtec_anomaly_detection", folder/"mvtec_anomaly_detection", "xztar")
    root = tmp_path/"mvtec"
    download_mvtec_ad(root, ["bottle", "wood"], base_url=f"{url}/{arc.name}", sha256=file_sha256(arc))
    assert list_categories(root) == ["bottle", "wood"]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["bottle", "wood"]
    with pytest.raises(FsadError, match="zipper"):
        download_mvtec_ad(tmp_path/"m2", ["bottle", "zipper"], base_url=f"{url}/{arc.name}")


def test_mvtec_wrong_checksum(server, tmp_path):
    folder, url = server
    _synthetic(tmp_path/"src", "bottle"); _pack(tmp_path/"src", "bottle", folder/"bottle", "xztar")
    with pytest.raises(FsadError, match="bottle.tar.xz"):
        download_mvtec_ad(tmp_path/"m", ["bottle"], base_url=url + "/{category}.tar.xz", sha256={"bottle": "0" * 64})
    assert list_categories(tmp_path/"m") == []


def test_mpdd_nested_zip(server, tmp_path):
    folder, url = server
    for i, c in enumerate(["bracket_black", "metal_plate"]): _synthetic(tmp_path/"src"/"MPDD", c, i)
    arc = _pack(tmp_path/"src", "MPDD", folder/"MPDD", "zip")
    cats = download_mpdd(tmp_path/"mpdd", url=f"{url}/{arc.name}", sha256=file_sha256(arc))
    assert [c.name for c in cats] == ["bracket_black", "metal_plate"]
    assert len(MVTecLayout(tmp_path/"mpdd", "metal_plate", "train")) == 4
    with pytest.raises(FsadError, match="url"): download_mpdd(tmp_path/"x", url=None)
    (folder/"bad.zip").write_bytes(b"junk")
    with pytest.raises(FsadError, match="bad.zip"): download_mpdd(tmp_path/"y", url=f"{url}/bad.zip", sha256="1" * 64)


# ---------------------------------------------------------------- VisA

def test_visa_download_and_convert(server, tmp_path):
    folder, url = server
    fake_visa(tmp_path/"src"/"VisA", n_normal=6, n_anomaly=3)
    arc = _pack(tmp_path/"src"/"VisA", ".", folder/"VisA_20220922", "tar")   # categories at the top, like the real one
    root = tmp_path/"visa"
    cats = download_visa(root, url=f"{url}/{arc.name}", sha256=file_sha256(arc))
    assert [c.name for c in cats] == ["gadget", "widget"] and list_categories(root) == ["gadget", "widget"]
    tr, te = MVTecLayout(root, "gadget", "train"), MVTecLayout(root, "gadget", "test", size=None)
    assert len(tr) == 4 and len(te) == 5 and te.labels.tolist() == [1, 1, 1, 0, 0]
    for i in range(len(te)):
        it = te[i]
        assert set(it["mask"].unique().tolist()) <= {0.0, 1.0}
        assert it["mask"].sum() == (35 if it["label"] else 0)          # 0/1/2/3-valued masks binarised
    assert not [p for p in root.iterdir() if p.name.startswith(".staging")]


def test_visa_converter_errors(tmp_path):
    raw = fake_visa(tmp_path/"raw")
    os.remove(raw/"widget"/"Data"/"Images"/"Normal"/"0001.JPG")
    with pytest.raises(FsadError, match="0001.JPG"): visa_to_mvtec(raw, tmp_path/"out")
    assert not (tmp_path/"out"/"widget").exists()                       # a failed object leaves no half category
    (tmp_path/"empty").mkdir()
    with pytest.raises(FsadError, match="1cls.csv"): visa_to_mvtec(tmp_path/"empty", tmp_path/"out")


# ---------------------------------------------------------------- DAGM

def test_dagm_download_and_convert(server, tmp_path):
    folder, url = server
    fake_dagm(tmp_path/"src", classes=(1, 3), n_train=(5, 2), n_test=(3, 4))
    arcs = [_pack(tmp_path/"src", f"Class{c}", folder/f"Class{c}", "zip") for c in (1, 3)]
    root = tmp_path/"dagm"
    cats = download_dagm(root, url=[f"{url}/{a.name}" for a in arcs], sha256=[file_sha256(a) for a in arcs])
    assert [c.name for c in cats] == ["dagm_class1", "dagm_class3"]
    tr, te = MVTecLayout(root, "dagm_class3", "train"), MVTecLayout(root, "dagm_class3", "test", size=None)
    assert len(tr) == 5                                                 # defective Train images left out
    assert te.labels.tolist() == [1] * 4 + [0] * 3 and set(te.defect_types) == {"defect", "good"}
    assert all(te[i]["mask"].sum() == (84 if te[i]["label"] else 0) for i in range(len(te)))
    with pytest.raises(FsadError, match="url"): download_dagm(tmp_path/"x", url=None)


def test_dagm_converter_errors(tmp_path):
    raw = fake_dagm(tmp_path/"raw", classes=(2,))
    (raw/"Class2"/"Test"/"Label"/"Labels.txt").unlink()
    with pytest.raises(FsadError, match="Labels.txt"): dagm_to_mvtec(raw, tmp_path/"out")
    with pytest.raises(FsadError, match="class5"): dagm_to_mvtec(raw, tmp_path/"out", classes=["Class5"])
