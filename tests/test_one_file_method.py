"""A new method written in this one file (a ~30-line detector with `@register`) runs through `fsad run`, `fsad fit`,
`fsad predict` and `fsad export` (ONNX parity < 1e-4) with no edit to any library file."""
import csv, dataclasses, json
import numpy as np
import pytest
import torch
from fsad_nb import cli, registry
from fsad_nb.core import Config, require
from fsad_nb.detector import Detector, Scorer, register, REGISTRY
from fsad_nb.backbones import patch_features


# ---- the whole method -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class MeanPatchConfig(Config):
    "Each patch feature's distance to the support's mean feature at the same position."
    backbone: str = "efficientnet_lite0"
    weights: str | None = "default"
    sigma: float = 4.0                    # Gaussian smoothing of the map, in pixels
    def check(self): require(self.sigma >= 0, "sigma", self.sigma, "must be >= 0")

class MeanPatchScorer(Scorer):
    def __init__(self, extractor, mean, sigma):
        super().__init__(sigma); self.extractor = extractor; self.register_buffer("mean", mean)
    def embed(self, x): return patch_features(self.extractor, x, (1, 2), 3).float()
    def patch_scores(self, E): return (E - self.mean).norm(dim=1)

@register
class MeanPatch(Detector):
    "Per-position distance to the support's mean patch feature (a one-file method)."
    name = "meanpatch"
    config_cls = MeanPatchConfig
    def __init__(self, config=None, device=None):
        super().__init__(config, device); self.extractor = self.build_extractor()
    def scorer(self): return MeanPatchScorer(self.extractor, self.mean, self.config.sigma)
    @torch.inference_mode()
    def fit(self, support, *, progress=False):
        x = self._check_images(support, "support").to(self.device)
        self.mean, self.fitted = MeanPatchScorer(self.extractor, None, 0).embed(x).mean(0), True
        return self
    def state(self): return {"mean": self.mean.cpu(), **self.extractor_state()}
    def set_state(self, s): self.mean = s["mean"].to(self.device); self.load_extractor_state(s)
# ---------------------------------------------------------------------------------------------------------------
REGISTRY.pop("meanpatch")   # registered by `@register` above; the fixture below keeps it to this file's test


@pytest.fixture(autouse=True, scope="module")
def _unregister_after():
    "The method is registered while this file's test runs; later tests in this process see the library's methods only."
    REGISTRY["meanpatch"] = MeanPatch
    yield
    REGISTRY.pop("meanpatch", None)


def test_one_file_method_runs_through_every_command(tmp_path, capsys):
    assert "meanpatch" not in registry.method_index() and REGISTRY["meanpatch"] is MeanPatch   # the library does not know it
    cli.main(["data", "synthetic", "--root", str(tmp_path/"data")])
    cat = next(p for p in (tmp_path/"data").iterdir() if p.is_dir())
    cli.main(["run", "--method", "meanpatch", "--root", str(tmp_path/"data"), "--category", cat.name, "--shots", "2",
              "--rounds", "2", "--image-size", "64", "--device", "cpu", "--out", str(tmp_path/"run")])
    summary = json.loads((tmp_path/"run"/cat.name/"summary.json").read_text())
    assert summary["method"] == "meanpatch" and "2" in summary["by_shots"]
    assert summary["by_shots"]["2"]["rounds"] == 2 and summary["by_shots"]["2"]["image_auroc"]["mean"] > 0.5   # it detects

    cli.main(["fit", "--method", "meanpatch", "--support", str(cat), "--shots", "2", "--image-size", "64",
              "--device", "cpu", "--out", str(tmp_path/"part.fsad")])
    cli.main(["predict", str(tmp_path/"part.fsad"), str(cat/"test"), "--recursive", "--device", "cpu", "--out", str(tmp_path/"pred")])
    rows = list(csv.DictReader(open(tmp_path/"pred"/"scores.csv")))
    assert len(rows) == len([p for p in (cat/"test").rglob("*.png")]) and all(r["score"] and not r["error"] for r in rows)

    capsys.readouterr()
    cli.main(["export", str(tmp_path/"part.fsad"), "--format", "onnx", "--out", str(tmp_path/"part.onnx")])
    out = capsys.readouterr().out
    gap = float(out.split("largest relative difference")[1].split()[0].rstrip(","))
    assert gap < 1e-4, out
    cli.main(["predict", str(tmp_path/"part.onnx"), str(cat/"test"), "--recursive", "--out", str(tmp_path/"pred_onnx")])
    onnx_rows = list(csv.DictReader(open(tmp_path/"pred_onnx"/"scores.csv")))
    s, s_onnx = (np.array([float(r["score"]) for r in rs]) for rs in (rows, onnx_rows))
    assert np.allclose(s, s_onnx, rtol=1e-4, atol=1e-6)
