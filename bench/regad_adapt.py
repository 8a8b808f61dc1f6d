"""RegAD adaptation time: `fit` on K support images with all 22 augmentations (22K images through the network, one
Gaussian per position), after warm-up, split into its two parts.

    python bench/regad_adapt.py --device cpu --shots 8
    python bench/regad_adapt.py --device cuda --shots 8

Prints one JSON object and writes it to bench/results/regad_adapt_<device>.json. Paper (RTX 3090, ResNet-18):
4.47 s per category. The network's weights do not change the cost, so an untrained one is timed.
"""
import argparse, json, platform, statistics, time
from pathlib import Path

import torch

from fsad_nb.core import get_device, save_json, set_seed
from fsad_nb.methods.regad import RegAD, RegADConfig, RegADScorer, support_augmentations, gaussian_fit


def _sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def timed(fn, device):
    _sync(device); t0 = time.perf_counter(); out = fn(); _sync(device)
    return time.perf_counter() - t0, out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--device", default="auto")
    p.add_argument("--shots", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    set_seed(0)
    dev = get_device(a.device)
    det = RegAD(RegADConfig(backbone=a.backbone), device=dev)
    make = lambda: torch.rand(a.shots, 3, a.image_size, a.image_size)
    det.fit(make())                                                        # warm-up
    fit_s, embed_s, gauss_s = [], [], []
    for _ in range(a.repeats):
        x = make()
        fit_s.append(timed(lambda: det.fit(x), dev)[0])
        t, E = timed(lambda: det.features(support_augmentations(x), RegADScorer(det.net, None, None, det.config).eval()).flatten(2).to(dev), dev); embed_s.append(t)
        gauss_s.append(timed(lambda: gaussian_fit(E, det.config.eps, det.config.chunk), dev)[0])
    res = {"backbone": a.backbone, "device": str(dev),
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "threads": torch.get_num_threads(), "shots": a.shots, "n_augmented": 22 * a.shots, "image_size": a.image_size,
           "feature_dims": int(E.shape[1]), "positions": int(E.shape[2]), "repeats": a.repeats,
           "adapt_s_median": round(statistics.median(fit_s), 3), "adapt_s_all": [round(t, 3) for t in fit_s],
           "augment_and_embed_s_median": round(statistics.median(embed_s), 3),
           "gaussian_fit_s_median": round(statistics.median(gauss_s), 3), "torch": torch.__version__}
    print(json.dumps(res, indent=2))
    out = Path(a.out or Path(__file__).parent/"results"/f"regad_adapt_{dev.type}.json")
    save_json(out, res)
    return res


if __name__ == "__main__":
    main()
