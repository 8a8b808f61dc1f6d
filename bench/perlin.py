"""Pseudo-anomalies per second at 256x256: batched torch (`fsad_nb.perlin`) on the CPU, and on a GPU when there is
one, beside a straightforward per-image numpy implementation written here as the reference.

    .venv/bin/python bench/perlin.py            # prints JSON and writes bench/results/perlin.json
    .venv/bin/python bench/perlin.py --quick    # fewer images: a smoke test of the script

What is timed:
  core  the same work in both implementations, per image: lattice scales 2**randint(0, 6) per axis, Perlin noise with
        the quintic fade, a rotation by U(-90, 90) degrees, threshold 0.5, a texture drawn from a bank loaded
        beforehand, beta ~ U(0.2, 1) and the blend of DFD's Eq. 3 -> (image, mask, label).
  full  torch only: everything `PseudoAnomaly` does by default on top of core, i.e. three of ten random texture
        augmentations per image (the numpy reference has no augmentations to compare with).
Each measurement is the best of several repeats, interleaved between implementations, because the machine may be
shared; the numpy reference runs on one core (it is single-threaded), torch is measured with one thread (the fair
comparison) and with all threads.
"""
from __future__ import annotations
import argparse, math, os, platform, sys, time
from pathlib import Path
import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsad_nb.core import save_json                                   # noqa: E402
from fsad_nb.perlin import PseudoAnomaly, TextureBank               # noqa: E402
from fsad_nb.datasets import find                                    # noqa: E402


# ---- the reference: one image at a time, numpy + scipy, the way a first implementation is written ----------------
def fade_np(t):
    return 6 * t**5 - 15 * t**4 + 10 * t**3

def perlin_np(H, W, ry, rx, rng):
    "Perlin noise on an ry x rx lattice over an H x W image (gradients at the (ry+1) x (rx+1) corners)."
    ang = rng.uniform(0, 2 * np.pi, (ry + 1, rx + 1))
    gu, gv = np.cos(ang), np.sin(ang)
    u, v = np.arange(H) * ry / H, np.arange(W) * rx / W
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    s, t = np.meshgrid(u - u0, v - v0, indexing="ij")
    U0, V0 = np.meshgrid(u0, v0, indexing="ij")
    n = lambda du, dv: gu[U0 + du, V0 + dv] * (s - du) + gv[U0 + du, V0 + dv] * (t - dv)
    fs, ft = fade_np(s), fade_np(t)
    top = n(0, 0) + ft * (n(0, 1) - n(0, 0))
    bottom = n(1, 0) + ft * (n(1, 1) - n(1, 0))
    return math.sqrt(2) * (top + fs * (bottom - top))

def anomaly_np(img, textures, rng):
    "One pseudo-anomaly: img [H, W, 3] float32 in [0, 1], textures [N, H, W, 3] uint8 -> (image, mask, label)."
    H, W, _ = img.shape
    ry, rx = 2 ** rng.integers(0, 6, 2)
    noise = ndimage.rotate(perlin_np(H, W, ry, rx, rng), rng.uniform(-90, 90), reshape=False, order=1)
    m = (noise > 0.5).astype(np.float32)[..., None]
    tex = textures[rng.integers(len(textures))].astype(np.float32) / 255
    beta = rng.uniform(0.2, 1.0)
    out = img * (1 - m) + (1 - beta) * (img * m) + beta * (tex * m)          # Eq. 3
    return out, m, float(m.any())


# ---- timing --------------------------------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()

def rate_numpy(imgs, textures, seed=0):
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    area = [anomaly_np(im, textures, rng)[1].mean() for im in imgs]
    return len(imgs) / (time.perf_counter() - t0), float(np.mean(area))

def rate_torch(gen, images, batch, device, seed=0):
    g = torch.Generator(device).manual_seed(seed)
    sync(device); t0 = time.perf_counter()
    area = []
    for i in range(0, len(images), batch):
        _, m, _ = gen(images[i:i + batch], g)
        area.append(m.mean())
    sync(device)
    return len(images) / (time.perf_counter() - t0), float(torch.stack(area).mean())

def best(results):
    "Best rate over repeats (the least disturbed run), with its mean mask area."
    return max(results, key=lambda r: r[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="a few images only: checks that the script runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "perlin.json"))
    ap.add_argument("--textures", default="dtd10", help="a texture dataset of the data home, or a folder")
    a = ap.parse_args(argv)
    S, R = a.size, (1 if a.quick else a.repeats)
    n_np, n_cpu, batch_cpu = (8, 32, 32) if a.quick else (64, 256, 64)

    if not Path(a.textures).is_dir() and (found := find(a.textures)) is not None: a.textures = str(found)
    if Path(a.textures).is_dir():
        bank = TextureBank(a.textures, size=S, max_images=100, augment=False)
        bank_src = Path(a.textures).name
        tex_u8 = bank.images
    else:                                                            # any textures do for timing
        bank_src, tex_u8 = "random", torch.randint(0, 256, (100, 3, S, S), dtype=torch.uint8)
        bank = TextureBank(None, size=S, augment=False); bank.images = tex_u8
    bank_aug = TextureBank(None, size=S, augment=True); bank_aug.images = tex_u8
    tex_np = tex_u8.permute(0, 2, 3, 1).numpy()
    images = torch.rand(n_cpu, 3, S, S, generator=torch.Generator().manual_seed(0))
    imgs_np = images[:n_np].permute(0, 2, 3, 1).numpy()
    core, full = PseudoAnomaly(p_normal=0.0, textures=bank), PseudoAnomaly(p_normal=0.0, textures=bank_aug)

    threads = torch.get_num_threads()
    runs = {k: [] for k in ("numpy", "cpu1_core", "cpu1_full", "cpu_core", "cpu_full")}
    rate_torch(core, images[:batch_cpu], batch_cpu, torch.device("cpu"))         # warm-up
    for r in range(R):
        runs["numpy"].append(rate_numpy(imgs_np, tex_np, r))
        for nt, tag in ((1, "cpu1"), (threads, "cpu")):
            torch.set_num_threads(nt)
            runs[f"{tag}_core"].append(rate_torch(core, images, batch_cpu, torch.device("cpu"), r))
            runs[f"{tag}_full"].append(rate_torch(full, images, batch_cpu, torch.device("cpu"), r))
    torch.set_num_threads(threads)
    b = {k: best(v) for k, v in runs.items()}

    res = dict(
        size=S, textures=bank_src, repeats=R,
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), torch_threads=threads,
                     load_average=os.getloadavg(), torch=torch.__version__, numpy=np.__version__),
        numpy_reference=dict(images_per_s=round(b["numpy"][0], 1), n_images=n_np, mean_mask_area=round(b["numpy"][1], 4),
                             note="per image, numpy float64 noise + scipy.ndimage.rotate + float32 blend, one core"),
        torch_cpu_1_thread=dict(core_images_per_s=round(b["cpu1_core"][0], 1), full_images_per_s=round(b["cpu1_full"][0], 1),
                                batch=batch_cpu, n_images=n_cpu, mean_mask_area=round(b["cpu1_core"][1], 4)),
        torch_cpu_all_threads=dict(threads=threads, core_images_per_s=round(b["cpu_core"][0], 1),
                                   full_images_per_s=round(b["cpu_full"][0], 1), batch=batch_cpu, n_images=n_cpu),
        speedup_cpu_core_vs_numpy=dict(one_thread=round(b["cpu1_core"][0] / b["numpy"][0], 2),
                                       all_threads=round(b["cpu_core"][0] / b["numpy"][0], 2), target=3.0),
    )
    if torch.cuda.is_available():
        dev = torch.device("cuda"); n_gpu, batch_gpu = (512, 256) if a.quick else (8192, 512)
        gi = torch.rand(n_gpu, 3, S, S, device=dev)
        core.textures.to(dev); full.textures.to(dev)
        rate_torch(core, gi[:batch_gpu], batch_gpu, dev); rate_torch(full, gi[:batch_gpu], batch_gpu, dev)
        gc = best([rate_torch(core, gi, batch_gpu, dev, r) for r in range(R)])
        gf = best([rate_torch(full, gi, batch_gpu, dev, r) for r in range(R)])
        res["torch_gpu"] = dict(measured=True, device=torch.cuda.get_device_name(), batch=batch_gpu, n_images=n_gpu,
                                core_images_per_s=round(gc[0], 1), full_images_per_s=round(gf[0], 1), target=2000)
    else:
        res["torch_gpu"] = dict(measured=False, reason="no CUDA device on this machine", target=2000)
    print(__import__("json").dumps(res, indent=2))
    save_json(a.out, res)
    return res


if __name__ == "__main__":
    main()
