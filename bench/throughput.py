"""Inference throughput of a detector beside its bare backbone, on the same device, batch size and image size.

    python bench/throughput.py --method knn --device cpu --batch-size 32 --image-size 224
    python bench/throughput.py --method knn --device cuda --batch-size 32 --image-size 224
    python bench/throughput.py --method regad --device cpu --batch-size 32 --image-size 224
    python bench/throughput.py --method dfd --device cuda --batch-size 32 --image-size 224 --shots 2
    python bench/throughput.py --method dfd --device cpu --shots 2 --set n_augment=2 epochs=1   # a quick fit on a CPU
    python bench/throughput.py --method uniad --device cpu --batch-size 32 --image-size 224      # + meta-training s/epoch
    python bench/throughput.py --method knn --device cuda --batch-size 32 128 --precision bf16 fp32   # four runs, one JSON

Prints one JSON object and writes it to bench/results/throughput_<method>_<device>.json. The detector is fitted on
K=--shots random images first; every timed call gets a fresh tensor, so no cache can help the detector.
"""
import argparse, json, platform, sys, time
from pathlib import Path

import torch

from fsad_nb.core import get_device, autocast, save_json, set_seed
from fsad_nb.detector import get_detector
from fsad_nb.backbones import FeatureExtractor
import fsad_nb.methods.knn  # noqa: F401  (registers knn)
import fsad_nb.methods.regad  # noqa: F401  (registers regad)
import fsad_nb.methods.dfd  # noqa: F401  (registers dfd, simplenet)
import fsad_nb.methods.uniad  # noqa: F401  (registers uniad)
from fsad_nb.cli import parse_overrides


def _sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def images_per_second(fn, make_batch, n_batches, device, warmup=2):
    "Median-free, plain throughput: total images / total seconds over n_batches calls after warm-up."
    for _ in range(warmup): fn(make_batch())
    _sync(device)
    t, n = 0.0, 0
    for _ in range(n_batches):
        x = make_batch()
        _sync(device); t0 = time.perf_counter()
        fn(x)
        _sync(device); t += time.perf_counter() - t0; n += len(x)
    return n / t


MVTEC_TRAIN_IMAGES = 3629     # MVTec AD's normal training images: one UniAD epoch over all 15 categories


def uniad_training(det, dev, steps:int) -> dict:
    "Seconds per meta-training step (batch `config.batch_size`, jitter, the variant's training callbacks), and per MVTec AD epoch."
    c = det.config
    X = torch.randn(4 * c.batch_size, det.grid ** 2, sum(det.extractor.channels))   # tokens: the backbone runs once, before training
    det.learner(X, c.lr, 2, c.batch_size).fit(); _sync(dev)                  # warm-up
    t0 = time.perf_counter(); det.learner(X, c.lr, steps, c.batch_size).fit(); _sync(dev)
    per_step = (time.perf_counter() - t0) / steps
    return {"train_s_per_step": round(per_step, 4), "batch_size": c.batch_size, "adversarial": bool(det.training_callbacks()),
            "train_s_per_mvtec_epoch": round(per_step * MVTEC_TRAIN_IMAGES / c.batch_size, 1)}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--method", default="knn")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, nargs="+", default=[32], help="one or more batch sizes")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--shots", type=int, default=8)
    p.add_argument("--n-batches", type=int, default=5)
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="config overrides of the method, as in `fsad run` (e.g. a short fit: n_augment=2 epochs=1)")
    p.add_argument("--precision", choices=("bf16", "fp32"), nargs="+", default=["bf16"],
                   help="bf16: the detectors' and the backbone's bfloat16 autocast on CUDA (the default); fp32: float32 throughout")
    p.add_argument("--train-steps", type=int, default=5, help="UniAD: timed meta-training steps")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    over = parse_overrides(a.method, a.set, a.backbone)
    set_seed(0)
    dev = get_device(a.device)
    S = a.image_size
    fe = FeatureExtractor(a.backbone, device=dev)
    det = get_detector(a.method, device=dev, **over).fit(torch.rand(a.shots, 3, S, S))
    runs = []
    for B in a.batch_size:                      # one process, one fitted detector: every batch size and precision
        for prec in (a.precision if dev.type == "cuda" else ["fp32"]):
            amp = prec == "bf16"
            make_batch = lambda: torch.rand(B, 3, S, S)  # on the CPU, as a user's data loader hands it over
            def backbone(x):
                with torch.inference_mode(), autocast(dev, amp): return fe(x.to(dev, non_blocking=True))
            bb = images_per_second(backbone, make_batch, a.n_batches, dev)
            det.amp = amp
            dt = images_per_second(lambda x: det.predict(x, batch_size=B), make_batch, a.n_batches, dev)
            runs.append({"batch_size": B, "precision": prec, "backbone_img_per_s": round(bb, 2),
                         "detector_img_per_s": round(dt, 2), "ratio": round(dt / bb, 3)})
            print(json.dumps(runs[-1]))
    res = {"method": a.method, "backbone": a.backbone, "device": str(dev),
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "threads": torch.get_num_threads(), "image_size": S, "shots": a.shots, "overrides": over,
           **runs[0], "runs": runs, "torch": torch.__version__, "cuda": torch.version.cuda if dev.type == "cuda" else None}
    if a.method == "uniad": res.update(uniad_training(det, dev, a.train_steps))
    print(json.dumps(res, indent=2))
    out = Path(a.out or Path(__file__).parent/"results"/f"throughput_{a.method}_{dev.type}.json")
    save_json(out, res)
    return res


if __name__ == "__main__":
    main()
