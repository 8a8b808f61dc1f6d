"""`fsad_nb.datasets`: the data home, datasets by name, and the download-convert-check-install path of each source.

Every source is served as an archive built here, from a throw-away HTTP server on 127.0.0.1; nothing touches the
internet. The byte-for-byte tests rebuild the upstream Magnetic-tile and DTD archives from the reference copies in the
data home (found through FSAD_DATA) and are skipped when FSAD_DATA does not hold them.
"""
import os, shutil, dataclasses, tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fsad_nb.core import FsadError
from fsad_nb.data import make_synthetic_category, list_categories
from fsad_nb.testing import local_server, fake_visa, fake_dagm, fake_magnetic_tile_archive, fake_dtd_archive, fake_fashion_mnist
from fsad_nb import datasets as ds
from fsad_nb import converters as cv
from fsad_nb.datasets import (SOURCES, FASHION_MNIST_MD5, data_home, dataset, fetch, find, file_md5, describe, inventory,
                              load_fashion_mnist)
from fsad_nb.converters import DTD_MD5, MANIFESTS, magnetic_tile_split, dtd10_names

ROOT = Path(__file__).resolve().parents[1]


def _reference(name):
    "The folder of `name` in the data home of the environment the tests started in, or skip."
    d = find(name)
    if d is None: pytest.skip(f"{name} is not in the data home (FSAD_DATA={os.environ.get('FSAD_DATA')!r})")
    return d


def _tree(d):
    return sorted(str(p.relative_to(d)) for p in Path(d).rglob("*") if p.is_file())


def _assert_same_bytes(a, b):
    assert _tree(a) == _tree(b)
    differ = [r for r in _tree(a) if (Path(a)/r).read_bytes() != (Path(b)/r).read_bytes()]
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:3]}"


def _snapshot(d):
    "Every path under `d` with its size and modification time."
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(d).rglob("*")}


@pytest.fixture
def server(tmp_path):
    folder = tmp_path/"served"; folder.mkdir()
    with local_server(folder) as url: yield folder, url


@pytest.fixture
def home(tmp_path, monkeypatch):
    "A fresh, empty writable data home as the only FSAD_DATA folder (the reference copies are found before this runs)."
    h = tmp_path/"home"
    monkeypatch.setenv("FSAD_DATA", str(h))
    return h


def _leftovers(h):
    return sorted(os.listdir(h)) if Path(h).is_dir() else []


# ---------------------------------------------------------------- the data home

def test_data_home_order_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("FSAD_DATA", f"{tmp_path}/a::{tmp_path}/b:")
    assert data_home() == [tmp_path/"a", tmp_path/"b"]
    assert not (tmp_path/"a").exists()
    monkeypatch.delenv("FSAD_DATA")
    assert data_home() == [Path.home()/".cache"/"fsad_nb"]


def test_found_in_a_later_home_without_writing(tmp_path, monkeypatch):
    first, second, third = tmp_path/"first", tmp_path/"second", tmp_path/"third"
    fake_fashion_mnist(third/"fashion_mnist")
    (second/"fashion_mnist").mkdir(parents=True)                      # incomplete copy: skipped
    (second/"fashion_mnist"/"train-images-idx3-ubyte.gz").write_bytes(b"")
    before = {d: _snapshot(d) for d in (second, third)}
    monkeypatch.setenv("FSAD_DATA", f"{first}:{second}:{third}")
    assert dataset("fashion_mnist") == third/"fashion_mnist"          # download allowed, but not needed
    assert fetch("fashion_mnist") == third/"fashion_mnist"
    assert not first.exists()
    assert {d: _snapshot(d) for d in (second, third)} == before
    assert load_fashion_mnist(dataset("fashion_mnist"), "train")[0].shape == (12, 28, 28)


def test_missing_without_download_names_dataset_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("FSAD_DATA", f"{tmp_path}/a:{tmp_path}/b")
    with pytest.raises(FsadError) as e: dataset("magnetic_tile", download=False)
    msg = str(e.value)
    assert "'magnetic_tile' not found" in msg and str(tmp_path/"a"/"magnetic_tile") in msg and str(tmp_path/"b"/"magnetic_tile") in msg
    assert not (tmp_path/"a").exists()
    with pytest.raises(FsadError, match="known datasets: .*dtd10.*magnetic_tile"): dataset("magnetic_tiles")


def test_first_home_not_writable(tmp_path, monkeypatch, server):
    folder, url = server
    (tmp_path/"a_file").write_text("not a folder")
    monkeypatch.setenv("FSAD_DATA", str(tmp_path/"a_file"/"home"))
    src = dataclasses.replace(SOURCES["fashion_mnist"], url=f"{url}/x.gz")
    with pytest.raises(FsadError, match="cannot write here"): dataset(src, progress=False)


# ---------------------------------------------------------------- failures leave nothing

def test_failed_downloads_leave_no_folder(home, server):
    folder, url = server
    files = fake_fashion_mnist(folder/"fm")
    src = dataclasses.replace(SOURCES["fashion_mnist"], url=tuple(f"{url}/fm/{n}" for n in FASHION_MNIST_MD5))
    with pytest.raises(FsadError, match="MD5 mismatch"): dataset(src, progress=False)          # the real MD5s
    assert _leftovers(home) == []
    md5s = {n: f"md5:{file_md5(files/n)}" for n in FASHION_MNIST_MD5}
    (files/"t10k-labels-idx1-ubyte.gz").unlink()                                            # the last file: 404
    with pytest.raises(FsadError): dataset(dataclasses.replace(src, checksums=md5s), progress=False)
    assert _leftovers(home) == []
    (folder/"dtd-r1.0.1.tar.gz").write_bytes(b"\x1f\x8b" + b"truncated" * 50)              # not an archive
    bad = dataclasses.replace(SOURCES["dtd10"], url=f"{url}/dtd-r1.0.1.tar.gz",
                              checksums={"dtd-r1.0.1.tar.gz": f"md5:{file_md5(folder/'dtd-r1.0.1.tar.gz')}"})
    with pytest.raises(FsadError): dataset(bad, progress=False)
    assert _leftovers(home) == []


def test_incomplete_folder_is_not_overwritten(home, server):
    folder, url = server
    (home/"fashion_mnist").mkdir(parents=True); (home/"fashion_mnist"/"mine.txt").write_text("keep me")
    src = dataclasses.replace(SOURCES["fashion_mnist"], url=f"{url}/nothing.gz")
    with pytest.raises(FsadError, match="remove it"): dataset(src, progress=False)
    assert _leftovers(home) == ["fashion_mnist"] and _tree(home/"fashion_mnist") == ["mine.txt"]


# ---------------------------------------------------------------- magnetic_tile

def test_magnetic_tile_rebuilt_byte_for_byte(tmp_path, server, monkeypatch):
    reference = _reference("magnetic_tile")
    folder, url = server
    fake_magnetic_tile_archive(reference, folder/"master.zip")
    h = tmp_path/"home"; monkeypatch.setenv("FSAD_DATA", str(h))
    out = dataset(dataclasses.replace(SOURCES["magnetic_tile"], url=f"{url}/master.zip"), progress=False)
    assert out == h/"magnetic_tile" and _leftovers(h) == ["magnetic_tile"]
    assert len(_tree(out)) == len(magnetic_tile_split()) + 1                              # + split.json
    _assert_same_bytes(out, reference)
    assert (out/"split.json").read_bytes() == (MANIFESTS/"magnetic_tile_split.json").read_bytes()


def test_magnetic_tile_soft_masks_are_binarised(tmp_path):
    reference = _reference("magnetic_tile")
    split = {k: v for k, v in magnetic_tile_split().items() if k.endswith(("/000.jpg", "/000_mask.png"))}
    up = tmp_path/"up"/"Magnetic-tile-defect-datasets.-master"
    for dst, src in split.items():
        (up/src).parent.mkdir(parents=True, exist_ok=True)
        if dst.startswith("ground_truth/"):                                     # grey levels either side of 127
            m = np.asarray(Image.open(reference/dst)); Image.fromarray(np.where(m > 0, 128, 127).astype(np.uint8)).save(up/src)
        else: shutil.copyfile(reference/dst, up/src)
    out = cv.magnetic_tile_to_mvtec(tmp_path/"up", tmp_path/"out", split=split)
    cv.check_magnetic_tile(out, split)                                          # same pixels as the reference
    for dst in split:
        if dst.startswith("ground_truth/"): assert np.array_equal(np.asarray(Image.open(out/dst)), np.asarray(Image.open(reference/dst)))


def test_magnetic_tile_changed_upstream_refused(tmp_path, server, monkeypatch):
    reference = _reference("magnetic_tile")
    folder, url = server
    changed = tmp_path/"changed"; shutil.copytree(reference, changed)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(changed/"ground_truth"/"fray"/"005_mask.png")   # a different mask
    fake_magnetic_tile_archive(changed, folder/"master.zip")
    h = tmp_path/"home"; monkeypatch.setenv("FSAD_DATA", str(h))
    with pytest.raises(FsadError, match="ground_truth/fray/005_mask.png"):
        dataset(dataclasses.replace(SOURCES["magnetic_tile"], url=f"{url}/master.zip"), progress=False)
    assert _leftovers(h) == []


# ---------------------------------------------------------------- DTD

def test_dtd10_rebuilt_byte_for_byte(tmp_path, server, monkeypatch):
    reference = _reference("dtd10")
    folder, url = server
    archive = fake_dtd_archive(reference, folder/"dtd-r1.0.1.tar.gz")
    h = tmp_path/"home"; monkeypatch.setenv("FSAD_DATA", str(h))
    src = dataclasses.replace(SOURCES["dtd10"], url=f"{url}/dtd-r1.0.1.tar.gz")
    with pytest.raises(FsadError, match=f"MD5 mismatch: expected {DTD_MD5}"): dataset(src, progress=False)
    assert _leftovers(h) == []
    ours = {"dtd-r1.0.1.tar.gz": f"md5:{file_md5(archive)}"}
    out = dataset(dataclasses.replace(src, checksums=ours), progress=False)
    _assert_same_bytes(out, reference)
    assert _tree(out) == sorted(f"{c}/{n}" for c, ns in dtd10_names().items() for n in ns)
    full = dataset(dataclasses.replace(SOURCES["dtd"], url=src.url, checksums=ours, expect=tuple(dtd10_names())), progress=False)
    _assert_same_bytes(full, out)                                               # dtd10 is dtd, file for file
    assert _leftovers(h) == ["dtd", "dtd10"]


def test_dtd_shrinks_large_images(tmp_path):
    up = tmp_path/"dtd"/"images"/"banded"; up.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(up/"banded_0001.jpg", quality=95)
    Image.fromarray(rng.integers(0, 255, (300, 300), dtype=np.uint8)).save(up/"banded_0002.jpg")            # grey
    Image.fromarray(rng.integers(0, 255, (100, 80, 3), dtype=np.uint8)).save(up/"banded_0003.jpg", quality=75)
    out = cv.dtd_to_folders(tmp_path, tmp_path/"out")
    sizes = {p.name: Image.open(p).size for p in (out/"banded").iterdir()}
    assert sizes == {"banded_0001.jpg": (256, 192), "banded_0002.jpg": (256, 256), "banded_0003.jpg": (80, 100)}
    assert Image.open(out/"banded"/"banded_0002.jpg").mode == "RGB"
    assert (out/"banded"/"banded_0003.jpg").read_bytes() == (up/"banded_0003.jpg").read_bytes()   # fits: copied
    with pytest.raises(FsadError, match="banded_0009.jpg"): cv.dtd_to_folders(tmp_path, tmp_path/"o2", {"banded": ["banded_0009.jpg"]})


# ---------------------------------------------------------------- Fashion-MNIST, elpv and the fsad_nb.data converters

def test_fashion_mnist_served_checked_and_loadable(home, server):
    folder, url = server
    files = fake_fashion_mnist(folder/"fm", n_train=7, n_test=3)
    src = dataclasses.replace(SOURCES["fashion_mnist"], url=tuple(f"{url}/fm/{n}" for n in FASHION_MNIST_MD5),
                              checksums={n: f"md5:{file_md5(files/n)}" for n in FASHION_MNIST_MD5})
    out = dataset(src, progress=False)
    _assert_same_bytes(out, files)
    X, y = load_fashion_mnist(out, "test")
    assert X.shape == (3, 28, 28) and y.shape == (3,) and int(y.max()) <= 9


@pytest.mark.parametrize("name", ["mvtec_ad", "visa", "mpdd", "dagm"])
def test_data_converters_under_the_registry(name, home, server, tmp_path):
    folder, url = server
    src_dir = tmp_path/"src"
    if name == "visa": fake_visa(src_dir)
    elif name == "dagm": fake_dagm(src_dir)
    else:
        for c in ("gadget", "widget"): make_synthetic_category(src_dir/"nested", c, n_train=3, n_test_good=1, n_test_defect=3, size=24)
    archive = Path(shutil.make_archive(str(folder/name), "gztar", src_dir))
    expect = () if name == "dagm" else ("gadget", "widget")
    out = dataset(dataclasses.replace(SOURCES[name], url=f"{url}/{archive.name}", expect=expect), progress=False)
    assert out == home/name and _leftovers(home) == [name]
    assert list_categories(out) == (["dagm_class1", "dagm_class2"] if name == "dagm" else ["gadget", "widget"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_elpv_from_a_package_folder(home, tmp_path):
    pkg = tmp_path/"elpv"; (pkg/"images").mkdir(parents=True)
    rows = [(f"images/c{i}.png", p, k) for i, (p, k) in enumerate([(0.0, "mono")] * 4 + [(1.0, "mono"), (0.0, "poly"), (1.0, "poly")])]
    for r, _, _ in rows: Image.fromarray(np.full((8, 8), 100, np.uint8)).save(pkg/r)
    (pkg/"labels.csv").write_text("".join(f"{r} {p} {k}\n" for r, p, k in rows))
    out = dataset(dataclasses.replace(SOURCES["elpv"], options=dict(data_dir=pkg)), progress=False)
    assert list_categories(out) == ["elpv_mono", "elpv_poly"]
    assert len(os.listdir(out/"elpv_mono"/"test"/"defect")) == 1


def test_no_public_link_says_where(home):
    for name, hint in (("mpdd", "stepanje/MPDD"), ("dagm", "DAGM")):
        with pytest.raises(FsadError, match=hint): dataset(name, progress=False)
    assert _leftovers(home) == []


# ---------------------------------------------------------------- listing and packaging

def test_describe_and_inventory(tmp_path, monkeypatch):
    a, b = tmp_path/"a", tmp_path/"b"
    fake_fashion_mnist(a/"fashion_mnist"); (b/"odd").mkdir(parents=True); (b/"odd"/"f").write_bytes(b"x" * 1500)
    (a/".fashion_mnist.staging-x").mkdir()                                     # hidden: not listed
    monkeypatch.setenv("FSAD_DATA", f"{a}:{b}")
    rows = {r["name"]: r for r in inventory()}
    assert sorted(rows) == ["fashion_mnist", "odd"]
    assert rows["fashion_mnist"]["complete"] and rows["fashion_mnist"]["writable"] and rows["fashion_mnist"]["licence"] == "MIT"
    assert rows["fashion_mnist"]["bytes"] == sum(p.stat().st_size for p in (a/"fashion_mnist").iterdir())
    assert rows["odd"] == dict(home=str(b), writable=False, name="odd", path=str(b/"odd"), bytes=1500, complete=None,
                               url=None, licence=None, cite=None)
    text = describe()
    assert f"{a} (writable" in text and f"{b} (searched" in text and "1.5 kB" in text and "fashion-mnist.s3" in text
    assert "fashion_mnist" not in text.splitlines()[-1] and "magnetic_tile" in text.splitlines()[-1]


def test_every_source_is_described():
    assert {"magnetic_tile", "dtd", "dtd10", "fashion_mnist", "elpv", "mvtec_ad", "visa", "mpdd", "dagm"} <= set(SOURCES)
    for s in SOURCES.values():
        assert s.licence and s.cite and s.size and s.yields and callable(s.fetch)
        assert all(spec.split(":")[0] in ("md5", "sha256") for spec in s.checksums.values())


def test_manifests_ship_with_the_package():
    cfg = tomllib.loads((ROOT/"pyproject.toml").read_text())
    assert "manifests/*.json" in cfg["tool"]["setuptools"]["package-data"]["fsad_nb"]
    assert MANIFESTS == ROOT/"fsad_nb"/"manifests"
    assert len(magnetic_tile_split()) == 1184 and sum(len(v) for v in dtd10_names().values()) == 600
    sha = cv.load_json(MANIFESTS/"magnetic_tile_sha256.json")["sha256"]
    assert set(sha) == set(magnetic_tile_split())


def test_a_notebook_runs_on_a_fresh_data_home_filled_by_download(tmp_path, server, monkeypatch):
    "10_knn (real magnetic tiles) end to end with only a data home that `dataset()` filled from a served archive."
    import subprocess, sys
    reference = _reference("magnetic_tile")
    folder, url = server
    fake_magnetic_tile_archive(reference, folder/"master.zip")
    h = tmp_path/"home"; monkeypatch.setenv("FSAD_DATA", str(h))
    dataset(dataclasses.replace(SOURCES["magnetic_tile"], url=f"{url}/master.zip"), progress=False)
    code = ("from nbdev.test import test_nb; import sys; "
            f"ok, _ = test_nb({str(ROOT/'nbs'/'10_knn.ipynb')!r}, skip_flags=['slow', 'cuda'], basepath={str(ROOT)!r}, showerr=True); "
            "sys.exit(0 if ok else 1)")
    env = {**os.environ, "FSAD_DATA": str(h)}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT/"nbs", env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert sorted(os.listdir(h)) == ["magnetic_tile"]          # nothing else was needed, nothing else was written
