"""Seconds per step of every method at its presets, on random images with random weights (weights do not change the time);
writes the timings `fsad reproduce` multiplies by step counts to estimate a table's time.

    python bench/preset_timing.py                       # paper and cpu presets, this CPU -> fsad_nb/tables/timings.json
    python bench/preset_timing.py --presets paper --methods regad dfd --out /tmp/t.json
"""
import argparse, datetime, json, sys, time
from pathlib import Path
import torch
from fsad_nb.reproduce import measure_preset, device_description, TIMINGS_FILE
from fsad_nb.presets import presets

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=None, help="default: every method with presets")
    p.add_argument("--presets", nargs="+", default=["paper", "cpu"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(TIMINGS_FILE))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: per-thread CPU time, robust on a shared CPU)")
    p.add_argument("--fresh", action="store_true", help="start a new file instead of updating the measured entries of --out")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    old = json.loads(Path(a.out).read_text()) if Path(a.out).is_file() and not a.fresh else {}
    res = old.get("methods", {}) if old.get("device") == device_description(a.device) else {}
    for m in a.methods or list(presets()):
        for name in a.presets:
            t = time.time()
            res.setdefault(m, {})[name] = measure_preset(m, name, a.device)
            print(f"{m:<10} {name:<6} {res[m][name]}  ({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
            write(a, res)
    print(Path(a.out).read_text())

def write(a, res):
    "The timings file with the entries measured so far."
    out = {"device": device_description(a.device), "source": "from bench/preset_timing.py (CPU time of the process, random weights, random images)",
           "measured": datetime.date.today().isoformat(), "torch": torch.__version__,
           "units": {"embed_image_s": "seconds per image through the fit-time feature path (RegAD: per augmented support image; "
                                      "DFD/SimpleNet: per augmented image with its pseudo-anomaly; UniAD: per meta-training image)",
                     "fit_const_s": "seconds per fit independent of K (RegAD: the per-position Gaussians)",
                     "train_step_s": "seconds per optimiser step at the preset's batch (TDG: one iteration over all scales at K images)",
                     "predict_image_s": "seconds per predicted image"},
           "methods": res}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")

if __name__ == "__main__": main()
