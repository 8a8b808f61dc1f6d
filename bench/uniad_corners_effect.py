"""The measured effect of resizing UniAD's tokens and error map corner-aligned, as the authors' code does.

UniAD's neck (MFCN) resizes the four stage maps to the 14x14 grid with nn.UpsamplingBilinear2d (align_corners=True)
and its map is upsampled x16 the same way; fsad_nb once used align_corners=False for both. This script meta-trains
UniAD briefly on dtd10 (leave-one-out: no magnetic tile is seen), then scores magnetic_tile's test images, with the
code of whichever fsad_nb is on the path, and adds one entry to the JSON:

    # before the fix: a worktree of the older commit
    PYTHONPATH=/work/before OMP_NUM_THREADS=1 python bench/uniad_corners_effect.py --label before
    # now (also writes "tokens corner-aligned, map upsampled as before": the same fitted model, old upsampling)
    OMP_NUM_THREADS=1 python bench/uniad_corners_effect.py --label after

Without fine-tuning (finetune_steps=0, the default) UniAD ignores the support images, so one round says all.
"""
import argparse, json, time
from pathlib import Path
import torch
import fsad_nb
from fsad_nb.datasets import dataset
from fsad_nb.data import load_split
from fsad_nb.metrics import image_auroc, pixel_auroc
from fsad_nb.methods.uniad import UniAD, UniADConfig

def evaluate(det, x, m, y) -> dict:
    s, A = det.fit(x[:1]).predict(x)
    return dict(image_auroc=image_auroc(y, s), pixel_auroc=pixel_auroc(m, A))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", required=True, help="the entry's name: before | after")
    p.add_argument("--json", type=Path, default=Path("bench/results/uniad_corners_effect.json"))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--steps", type=int, default=10, help="steps per epoch (8 images each)")
    p.add_argument("--step", type=int, default=4, help="every step-th test image")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    root = dataset("magnetic_tile").parent
    meta = sorted(q for q in dataset("dtd10").iterdir() if q.is_dir())
    x, m, y = load_split(root, "magnetic_tile", "test", size=a.size, indices=range(0, 492, a.step))
    cfg = UniADConfig(image_size=a.size, epochs=a.epochs, iters_per_epoch=a.steps, seed=0)
    det = UniAD(cfg).meta_fit(meta, progress=False)
    res = {a.label: dict(**evaluate(det, x, m, y), loss=[h["loss"] if isinstance(h, dict) else h for h in det.history])}
    if a.label != "before":                                            # the same model, its map upsampled as before
        from fsad_nb.methods.uniad import UniADScorer
        UniADScorer.align_corners = False
        det._version += 1                                              # predict's output cache must not answer
        res["tokens corner-aligned, map upsampled as before"] = evaluate(det, x, m, y)
        UniADScorer.align_corners = True
    for r in res.values(): r.update(code=str(Path(fsad_nb.__file__).parent.parent))
    setup = dict(category="magnetic_tile", meta="dtd10 (10 textures)", image_size=a.size, epochs=a.epochs,
                 steps_per_epoch=a.steps, batch_size=cfg.batch_size, test_images=len(x), seed=cfg.seed, threads=1,
                 command="OMP_NUM_THREADS=1 python bench/uniad_corners_effect.py --label LABEL (PYTHONPATH=<before> for 'before')")
    out = json.loads(a.json.read_text()) if a.json.exists() else {}
    out.update(setup=setup, **{"results": {**out.get("results", {}), **res}})
    a.json.write_text(json.dumps(out, indent=1))
    for k, r in res.items(): print(f"{k:50} image AUROC {r['image_auroc']:.4f}  pixel AUROC {r['pixel_auroc']:.4f}")
    print(f"{time.time() - t0:.0f} s")

if __name__ == "__main__": main()
