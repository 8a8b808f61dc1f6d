"""TDG on the one-class protocol of Fashion-MNIST (Sheynin et al. 2021, Sec. 4.1): each class normal in turn.

    python bench/tdg_oneclass.py --device cuda                                        # paper settings, all classes, K=1,5,10, 10 rounds
    python bench/tdg_oneclass.py --preset cpu --classes 0 --shots 5 --rounds 1 --n-test 2000 --threads 1
    python bench/tdg_oneclass.py --preset cpu --set use_generator=False --tag no_generator   # an ablation of Table 1

Per class and K, `--rounds` support draws of K training images of the class (`fewshot.support_indices`, the same
draws for every method and rerun), a TDG fit on them, and the image AUROC on the test set (all 10,000 images, the
other nine classes anomalous; `--n-test` scores a fixed random subset instead), each round seeded, fitted and
measured as a round of the protocol (`protocol.one_class_rounds`). The score is Eq. 12 over all patches
(`score_fraction=None`) unless `--set score_fraction=...` says otherwise. Prints one JSON object and writes it
atomically to bench/results/tdg_oneclass_<preset>_<device>[_<tag>].json, rewritten after every round so a long run
can be watched; the per-round AUROC, mean and std per class and K, and fit and predict seconds. Rerunning a command
resumes it: rounds already in the result file (same settings, seed and test subset) are kept and not run again;
`--fresh` starts over.
"""
import argparse, json, platform, sys, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsad_nb.core import get_device, save_json                                            # noqa: E402
from fsad_nb.datasets import load_fashion_mnist, FASHION_MNIST_CLASSES                    # noqa: E402
from fsad_nb.cli import parse_overrides                                                    # noqa: E402
from fsad_nb.methods.tdg import TDG, TDGConfig                                             # noqa: E402
from fsad_nb.protocol import one_class_rounds, summarise_one_class                        # noqa: E402

# Budgets of the runs, as TDGConfig overrides: settings of this benchmark, not of the method (the config's defaults
# are the paper's). "cpu" is what the CPU result runs in bench/results/tdg_oneclass_cpu_cpu_*.json used, and every
# value in it is a deviation chosen for time: 4 scales of 16-32 px (the paper: 5 of 25-64 px), 16 channels (32),
# 100 iterations per scale (500 for grey images) and 8 of the 42 transformations per training step (all of them;
# scoring always uses all). "tiny" is for smoke runs: 2 scales of 18 and 24 px, 8 channels, 20 iterations.
PRESETS = {"paper": {},
           "cpu": dict(max_size=32, min_size=16, nfc=16, iterations=100, transforms_per_step=8),
           "tiny": dict(max_size=24, min_size=18, nfc=8, iterations=20)}


def _table(summary) -> str:
    "Mean ± std AUROC (%) per class (rows) and K (columns)."
    Ks = sorted({K for v in summary.values() for K in v})
    lines = ["class".ljust(14) + "".join(f"K={K}".rjust(14) for K in Ks)]
    for c in sorted(summary):
        cells = [f"{100 * summary[c][K]['mean']:.1f} ± {100 * summary[c][K]['std']:.1f}" if K in summary[c] else "-" for K in Ks]
        lines.append(f"{c} {FASHION_MNIST_CLASSES[c]}"[:13].ljust(14) + "".join(x.rjust(14) for x in cells))
    return "\n".join(lines)


def _earlier(out:Path, over:dict, a) -> list[dict]:
    "Rounds of an earlier run written to `out` with the same settings, seed and test subset (none if it differs)."
    if not out.exists(): return []
    old = json.loads(out.read_text())
    if (old.get("overrides"), old.get("seed"), old.get("n_test")) != (over, a.seed, a.n_test):
        sys.exit(f"{out} holds a run with other settings; pass --fresh to replace it or --tag to write another file")
    print(f"resuming {out}: {len(old['rounds_detail'])} rounds kept", flush=True)
    return old["rounds_detail"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="base settings (paper: the defaults)")
    p.add_argument("--classes", type=int, nargs="*", default=list(range(10)), help="normal classes to run")
    p.add_argument("--shots", type=int, nargs="*", default=[1, 5, 10])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-test", type=int, default=None, help="score a fixed random subset of the test set (default: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="TDG config overrides, e.g. iterations=200")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--root", default=None, help="Fashion-MNIST folder (default: the data home's fashion_mnist)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--out", default=None, help="result file (default: bench/results/tdg_oneclass_...json)")
    p.add_argument("--fresh", action="store_true", help="ignore rounds already in the result file")
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    over = {"score_fraction": None, **PRESETS[a.preset], **parse_overrides("tdg", a.set)}
    config = TDGConfig(**over)
    dev = get_device(a.device)
    x_tr, y_tr = load_fashion_mnist(a.root, "train")
    x_te, y_te = load_fashion_mnist(a.root, "test")
    name = f"tdg_oneclass_{a.preset}_{dev.type}" + (f"_{a.tag}" if a.tag else "") + ".json"
    out = Path(a.out) if a.out else Path(__file__).parent/"results"/name

    records, t_start = _earlier(out, over, a) if not a.fresh else [], time.perf_counter()
    def result():
        return {"method": "tdg", "dataset": "fashion_mnist", "protocol": "one-class (Sec. 4.1)", "preset": a.preset,
                "overrides": over, "config": config.to_dict(), "device": str(dev),
                "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
                "threads": torch.get_num_threads(), "classes": a.classes, "shots": a.shots, "rounds": a.rounds,
                "seed": a.seed, "n_test": a.n_test, "wall_s": round(time.perf_counter() - t_start, 1),
                "summary": summarise_one_class(records), "rounds_detail": records, "torch": torch.__version__,
                "command": "python bench/tdg_oneclass.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    def on_round(rec):
        records.append(rec)
        print(f"class {rec['normal_class']} K={rec['K']} round {rec['round']}: AUROC {rec['auroc']:.4f} "
              f"(fit {rec['fit_s']:.1f} s, predict {rec['predict_s']:.1f} s)", flush=True)
        save_json(out, result())

    for c in a.classes:
        done = [(r["K"], r["round"]) for r in records if r["normal_class"] == c]
        one_class_rounds(lambda: TDG(config, device=dev), x_tr, y_tr, x_te, y_te, c, tuple(a.shots), a.rounds, a.seed,
                         a.n_test, a.batch_size, on_round=on_round, skip=done)
    res = result()
    save_json(out, res)
    print(json.dumps({k: v for k, v in res.items() if k != "rounds_detail"}, indent=2))
    print(_table(res["summary"]))
    print(f"written to {out}")
    return res


if __name__ == "__main__":
    main()
