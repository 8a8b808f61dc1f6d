"""Time one whole few-shot fit of DFD (or SimpleNet): augment + backbone tokens once, train, calibrate; then inference.

    python bench/dfd_fit.py --device cuda                                     # the paper's N=80, 80 epochs, K=2
    python bench/dfd_fit.py --device cuda --backbone wide_resnet50_2          # the paper's backbone (one download)
    python bench/dfd_fit.py --device cpu --n-augment 8 --epochs 4 --threads 1 # shrunk, for a CPU

The support images are K real normal images of --category under --root when that folder exists (else random
images), so the pseudo-anomalies and the token statistics are realistic. Inference is timed on --n-test images
(fresh tensor per call, so the test-token cache cannot help). Prints one JSON object and writes it to
bench/results/dfd_fit_<method>_<device>[_<tag>].json.

Paper (journal version, RTX 3090, WideResNet-50, 256 px): 10.1 s per training epoch, 0.09 s per test image.
Targets on a GPU: the whole K=2 fit with the paper's N and epochs under 60 s.
"""
import argparse, json, platform, sys, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsad_nb.core import get_device, save_json, set_seed                  # noqa: E402
from fsad_nb.datasets import find                                          # noqa: E402
from fsad_nb.data import load_split                                        # noqa: E402
from fsad_nb.detector import get_detector                                  # noqa: E402
from fsad_nb.cli import parse_overrides                                    # noqa: E402
import fsad_nb.methods.dfd                                                 # noqa: E402,F401  (registers dfd, simplenet)


def _sync(dev):
    if dev.type == "cuda": torch.cuda.synchronize(dev)


def _support(a, S):
    "K real normal images of the dataset when the data home has it, else random images."
    cat = find(a.dataset)
    if cat is not None and (cat/"train"/"good").is_dir():
        idx = [i * 37 for i in range(a.shots)]
        return load_split(cat.parent, cat.name, "train", size=S, indices=idx)[0], f"{cat.name} (train indices {idx})"
    return torch.rand(a.shots, 3, S, S), "random"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="dfd", choices=["dfd", "simplenet"])
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--device", default="auto")
    p.add_argument("--shots", type=int, default=2)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--n-augment", type=int, default=None, help="N per support image (default: the config's, 80 for dfd)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's, 80 for dfd)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--n-test", type=int, default=32, help="images per timed inference call")
    p.add_argument("--dataset", default="magnetic_tile", help="a dataset of the data home (see `fsad data list`)")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="other config overrides")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    over = parse_overrides(a.method, a.set, a.backbone)
    if a.n_augment is not None: over["n_augment"] = a.n_augment
    if a.epochs is not None: over["epochs"] = a.epochs
    set_seed(0)
    dev, S = get_device(a.device), a.image_size
    support, source = _support(a, S)

    det = get_detector(a.method, device=dev, seed=0, **over)
    _sync(dev); t0 = time.perf_counter()
    det.fit(support, progress=False)
    _sync(dev); fit_s = time.perf_counter() - t0

    x = torch.rand(a.n_test, 3, S, S)
    det.predict(x.clone(), batch_size=a.n_test)                               # warm-up
    _sync(dev); t0 = time.perf_counter()
    det.predict(x.clone(), batch_size=a.n_test)
    _sync(dev); pred_s = time.perf_counter() - t0

    c, tm = det.config, det.timings
    n_img = tm["n_train_images"]
    steps = -(-n_img // c.batch_size)
    res = {"method": a.method, "backbone": c.backbone, "device": str(dev),
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "threads": torch.get_num_threads(), "image_size": S, "shots": a.shots, "support": source,
           "n_augment": c.n_augment, "epochs": c.epochs, "batch_size": c.batch_size, "n_train_images": n_img,
           "steps_per_epoch": steps, "noise_std": det.noise_std, "overrides": over,
           "fit_s": round(fit_s, 2), "tokens_s": round(tm["tokens_s"], 2), "train_s": round(tm["train_s"], 2),
           "calibrate_s": round(tm["calibrate_s"], 2),
           "train_s_per_epoch": round(tm["train_s"] / max(c.epochs, 1), 3),
           "train_ms_per_step": round(1000 * tm["train_s"] / max(c.epochs * steps, 1), 2),
           "predict_s_per_image": round(pred_s / a.n_test, 4), "predict_img_per_s": round(a.n_test / pred_s, 2),
           "paper": {"train_s_per_epoch": 10.1, "predict_s_per_image": 0.09, "gpu": "RTX 3090", "backbone": "wide_resnet50_2"},
           "target_gpu_fit_s": 60, "final_loss": round(det.history[-1]["loss"], 4) if det.history else None,
           "torch": torch.__version__}
    print(json.dumps(res, indent=2))
    name = f"dfd_fit_{a.method}_{dev.type}" + (f"_{a.tag}" if a.tag else "") + ".json"
    save_json(Path(a.out) if a.out else Path(__file__).parent/"results"/name, res)
    return res


if __name__ == "__main__":
    main()
