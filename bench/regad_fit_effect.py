"""The effect of RegAD's fit corrections on the *same* trained network: a run's meta-trained checkpoint, fit on its
K-shot support draws and scored on every test image, once with this checkout's code and once with another checkout
(e.g. a worktree at the commit before the corrections). Separates what the fit changes from what training changes.

    git worktree add ../before a90cb08        # the code before the corrections
    python bench/regad_fit_effect.py results/lee/regad results/lee/regad_adv --before ../before --json bench/results/regad_fit_effect.json
"""
import argparse, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def score(code:Path, run:Path, K:int, rounds:list[int]) -> list[dict]:
    "Image and pixel AUROC of `run`'s trained network per round, with the fsad_nb found in `code` (a fresh process)."
    prog = f"""
import json, sys, torch
sys.path.insert(0, {str(code)!r})
from fsad_nb.detector import get_detector
from fsad_nb.data import load_split
from fsad_nb.metrics import image_auroc, pixel_auroc
from fsad_nb.datasets import dataset
torch.set_num_threads(1)
run = json.load(open({str(run/'magnetic_tile'/'run.json')!r}))
sets = json.load(open({str(run/'magnetic_tile'/'support_sets.json')!r}))["sets"][str({K})]
det = get_detector("regad", **{{k: v for k, v in run["config"].items() if not k.startswith("adv_")}})
det.net.load_state_dict(torch.load({str(run/'magnetic_tile'/'meta'/(run.name + '.pt'))!r}, weights_only=True)["net"])
root = dataset("magnetic_tile").parent
xt, mt, yt = load_split(root, "magnetic_tile", "test", size=run["image_size"])
out = []
for r in {rounds!r}:
    x, _, _ = load_split(root, "magnetic_tile", "train", size=run["image_size"], indices=sets[r])
    det.fit(x); s, m = det.predict(xt)
    out.append(dict(round=r, image_auroc=float(image_auroc(yt, s)), pixel_auroc=float(pixel_auroc(mt, m))))
print(json.dumps(out))
"""
    res = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders of regad / regad_adv on magnetic_tile")
    p.add_argument("--before", type=Path, required=True, help="a checkout of the code to compare with")
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--rounds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    out = {"K": a.K, "rounds": a.rounds, "before": str(a.before), "runs": {}}
    for run in a.runs:
        now, before = score(ROOT, run, a.K, a.rounds), score(a.before.resolve(), run, a.K, a.rounds)
        out["runs"][run.name] = {"now": now, "before": before}
        for n, b in zip(now, before):
            print(f"{run.name:10} round {n['round']}: image AUROC {100 * b['image_auroc']:.1f} -> {100 * n['image_auroc']:.1f}, "
                  f"pixel {100 * b['pixel_auroc']:.1f} -> {100 * n['pixel_auroc']:.1f}")
    if a.json:
        sys.path.insert(0, str(ROOT)); from fsad_nb.core import save_json
        save_json(a.json, out)

if __name__ == "__main__":
    main()
