"""Stage-by-stage agreement of fsad_nb with its authors' code, on identical weights and inputs.

    python bench/equivalence.py --official DIR [--methods regad uniad] [--write-fixtures] [--speed]

DIR holds one clone per repository, named as `git clone` names them (DIR/RegAD, DIR/UniAD, ...). Their modules
are imported from there, never edited: CPU shims (`Tensor.cuda`, `Tensor.get_device`, `Module.cuda`) are applied
from outside while their code runs, Pillow's removed `Image.ANTIALIAS` is aliased to `LANCZOS`, and byte-code
is not written into their folders.

Weights: every parameter and buffer comes from a seed recipe (`seeded_state`): a generator seeded from the
crc32 of the authors' key name. Our modules receive the same tensors through a documented key map (one per
method below). Backbones: torchvision weights cannot be downloaded here, so both sides get the same seeded
ResNet-18 / EfficientNet-B4 weights (our extractor folds BN into the convs; theirs keeps BN: same function).

Inputs: real magnetic_tile images (fsad_nb.datasets.dataset('magnetic_tile')), decoded by our data layer and
rounded to float16 so that the fixtures can store them exactly; both sides receive exactly those tensors. The
end-to-end stage also runs the authors' own input preparation beside ours.

Difference measures, per stage: max_abs = max |ours - theirs|; max_rel = max_abs / max |theirs| (relative to
the reference's scale, so that values near zero do not blow it up). Pass: max_rel <= tol (1e-5 in float32
unless a stage states its reason for a wider one). Stages where fsad_nb deliberately or knowingly computes
something else are marked `differs`, with the reason; the check then compares up to that point.

--write-fixtures stores the inputs, the seed recipe's key list and a fixed random sample (2048 values) of the
authors' outputs of every stage in tests/fixtures/official/ (.npz + .json, a few hundred kB per method);
tests/test_equivalence.py recomputes our side from them alone.
"""
from __future__ import annotations
import argparse, contextlib, copy, io, json, math, os, sys, tempfile, time, types, zlib
from pathlib import Path
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT/"tests"/"fixtures"/"official"
TOL = 1e-5
N_SAMPLE = 2048

# ----------------------------------------------------------------------------------------------------------
# shared machinery
# ----------------------------------------------------------------------------------------------------------
def seeded_tensor(name:str, shape, dtype=torch.float32) -> torch.Tensor:
    "The recipe: a tensor drawn from a generator seeded with crc32(name); scale chosen by the key's role."
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    shape = tuple(shape)
    if name.endswith("num_batches_tracked"): return torch.zeros(shape, dtype=torch.long)
    if name.endswith("running_var"): return 0.5 + torch.rand(shape, generator=g)
    if name.endswith("running_mean"): return 0.1 * torch.randn(shape, generator=g)
    if len(shape) <= 1:                                            # norm gains (weight) and all biases
        n = torch.randn(shape, generator=g)
        return (1 + 0.1 * n) if name.endswith("weight") else 0.1 * n
    fan_in = int(np.prod(shape[1:]))
    return torch.randn(shape, generator=g) / math.sqrt(fan_in)

def seeded_state(keys_shapes, overrides=None) -> dict:
    "State dict {key: seeded_tensor(key, shape)} for [(key, shape)]; `overrides[key](t)` adjusts single entries."
    sd = {k: seeded_tensor(k, s) for k, s in keys_shapes}
    for k, f in (overrides or {}).items():
        if k in sd: sd[k] = f(sd[k])
    return sd

def keys_shapes(sd:dict) -> list: return [(k, list(v.shape)) for k, v in sd.items()]

def _np(x): return (x.detach().double().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64))

def difference(ours, theirs) -> tuple[float, float]:
    "(max abs, max abs / max |theirs|); inf when the shapes disagree."
    a, b = _np(ours), _np(theirs)
    if a.shape != b.shape: return math.inf, math.inf
    d = float(np.abs(a - b).max()) if a.size else 0.0
    return d, d / max(float(np.abs(b).max()) if b.size else 0.0, 1e-30)

def sample_index(n:int, k:int=N_SAMPLE) -> np.ndarray:
    "A fixed random sample of k flat indices out of n (all of them when n <= k)."
    if n <= k: return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, k, replace=False))

def sampled(x) -> np.ndarray:
    a = _np(x).ravel()
    return a[sample_index(a.size)].astype(np.float32)

class Stage:
    "One compared stage: name, tolerance, and, where fsad_nb computes something else on purpose, why."
    def __init__(self, name, tol=TOL, differs=None, why_tol=None):
        self.name, self.tol, self.differs, self.why_tol = name, tol, differs, why_tol

def row(method, st:Stage, ours, theirs) -> dict:
    a, r = difference(ours, theirs)
    status = "pass" if r <= st.tol else ("differs" if st.differs else "FAIL")
    return dict(method=method, stage=st.name, max_abs=a, max_rel=r, tol=st.tol, status=status,
                note=st.differs if status == "differs" else (st.why_tol or ""), shape=list(np.shape(_np(theirs))))

@contextlib.contextmanager
def authors_code(root:Path, stubs:dict|None=None):
    "Run with `root` importable and CPU shims on; afterwards their modules are dropped from sys.modules again."
    from PIL import Image
    before, path, bytecode = set(sys.modules), list(sys.path), sys.dont_write_bytecode
    saved = dict(tcuda=torch.Tensor.cuda, mcuda=nn.Module.cuda, getdev=torch.Tensor.get_device,
                 antialias=getattr(Image, "ANTIALIAS", None))
    sys.dont_write_bytecode = True                                   # nothing is written into their folders
    sys.path.insert(0, str(root))
    for k, m in (stubs or {}).items(): sys.modules[k] = m
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.get_device = lambda self: "cpu"                      # theirs: torch.zeros(..., device=x.get_device())
    Image.ANTIALIAS = Image.LANCZOS                                  # removed in Pillow 10; the same filter
    try: yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda, torch.Tensor.get_device = saved["tcuda"], saved["mcuda"], saved["getdev"]
        if saved["antialias"] is None: del Image.ANTIALIAS
        sys.path[:], sys.dont_write_bytecode = path, bytecode
        for k in set(sys.modules) - before:                         # their modules and the stubs, nothing else
            f = getattr(sys.modules[k], "__file__", None) or ""
            if k in (stubs or {}) or f.startswith(str(Path(root).resolve())) or f.startswith(str(root)): del sys.modules[k]

def magnetic_tile(n_support:int=1):
    "Real images: `n_support` normal training images, one normal and one cracked test image (paths)."
    from fsad_nb.datasets import dataset
    d = dataset("magnetic_tile")
    good = sorted((d/"train"/"good").iterdir())[:n_support]
    return good, [sorted((d/"test"/"good").iterdir())[0], sorted((d/"test"/"crack").iterdir())[0]]

def as_input(paths, size:int) -> torch.Tensor:
    "Our data layer's tensor, rounded to float16 and back (so the fixtures hold it exactly)."
    from fsad_nb.data import load_images
    return load_images(paths, size).half().float()

def race(fa, fb, reps:int=3) -> tuple[float, float]:
    "Median wall times of fa() and fb(), run alternately (after one warm-up each), so that load on a shared machine "
    "affects both alike."
    fa(); fb(); ta, tb = [], []
    for _ in range(reps):
        t = time.perf_counter(); fa(); ta.append(time.perf_counter() - t)
        t = time.perf_counter(); fb(); tb.append(time.perf_counter() - t)
    return float(np.median(ta)), float(np.median(tb))

def timed(f, reps:int=3, warmup:bool=True) -> float:
    "Median wall time of f() in seconds (after one warm-up call unless `warmup` is False)."
    if warmup: f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))

# ----------------------------------------------------------------------------------------------------------
# RegAD (Huang et al., ECCV 2022): DIR/RegAD
# ----------------------------------------------------------------------------------------------------------
# Key map, theirs -> ours. Their STN model (models/stn.py, ResNet-18 with STNs) keeps the torchvision names, so
# its backbone keys load into torchvision's resnet18, which our FeatureExtractor cuts into stages and folds BN into.
#   stn{i}.conv.{0,1,4,5}.*  -> stns.{i-1}.loc.{0,1,4,5}.*     (conv 3x3, BN, conv 3x3, BN)
#   stn{i}.fc.0.* / fc.2.*   -> stns.{i-1}.loc.10.* / loc.12.* (Linear 16 s^2 -> 1024, Linear 1024 -> n)
#   ENC conv1, bn1, conv2, bn2, conv3 -> encoder.0, .1, .3, .4, .6   (their ENC.bn3 exists but forward never uses it)
#   PRED conv1, bn1, conv2           -> predictor.0, .1, .3
REGAD_STN = {"conv.0": "loc.0", "conv.1": "loc.1", "conv.4": "loc.4", "conv.5": "loc.5", "fc.0": "loc.10", "fc.2": "loc.12"}
REGAD_ENC = {"conv1": "0", "bn1": "1", "conv2": "3", "bn2": "4", "conv3": "6"}
REGAD_PRED = {"conv1": "0", "bn1": "1", "conv2": "3"}
REGAD_BACKBONE = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")

def regad_key(k:str) -> str|None:
    "Their key (prefixed 'STN.', 'ENC.', 'PRED.') -> ours in RegADNet, or None for the backbone and the unused ENC.bn3."
    part, rest = k.split(".", 1)
    if part == "STN" and rest.startswith("stn"):
        i, sub = rest[3], rest[5:]
        for a, b in REGAD_STN.items():
            if sub.startswith(a + "."): return f"stns.{int(i) - 1}.{b}{sub[len(a):]}"
        return None
    table, ours = {"ENC": (REGAD_ENC, "encoder"), "PRED": (REGAD_PRED, "predictor")}.get(part, (None, None))
    if table is None: return None
    mod, leaf = rest.split(".", 1)
    return f"{ours}.{table[mod]}.{leaf}" if mod in table else None

def regad_overrides(mode:str, n_params:int) -> dict:
    "The last STN layer starts at the identity in their code; seeded here as identity + small noise, so A != I."
    from fsad_nb.methods.regad import identity_params
    out = {}
    for i in (1, 2, 3):
        out[f"STN.stn{i}.fc.2.weight"] = lambda t: 0.01 * t
        out[f"STN.stn{i}.fc.2.bias"] = lambda t, m=mode: identity_params(m) + t
    return out

def regad_state(ks, mode="rotation_scale") -> dict:
    return seeded_state(ks, regad_overrides(mode, None))

def regad_identity_state(ks, mode="rotation_scale") -> dict:
    "The seeded state with every STN at the identity (last layer: zero weights, the identity parameters as bias)."
    from fsad_nb.methods.regad import identity_params
    zero = {f"STN.stn{i}.fc.2.weight": lambda t: torch.zeros_like(t) for i in (1, 2, 3)}
    return seeded_state(ks, {**zero, **{f"STN.stn{i}.fc.2.bias": lambda t, m=mode: identity_params(m) for i in (1, 2, 3)}})

def regad_ours(state:dict, mode:str="rotation_scale"):
    "Our RegAD detector (ResNet-18 from the seeded backbone weights) with every mapped weight loaded."
    import torchvision
    from fsad_nb.methods.regad import RegAD, RegADConfig
    net = torchvision.models.resnet18(weights=None)
    bb = {k[4:]: v for k, v in state.items() if k.startswith("STN.") and k[4:].startswith(REGAD_BACKBONE)}
    net.load_state_dict(bb, strict=False)
    with tempfile.TemporaryDirectory() as d:
        torch.save(net.state_dict(), Path(d)/"resnet18.pt")
        det = RegAD(RegADConfig(backbone="resnet18", weights=str(Path(d)/"resnet18.pt"), transform=mode), device="cpu")
    ours = det.net.state_dict()
    mapped = {regad_key(k): v for k, v in state.items() if regad_key(k) is not None}
    missing = [k for k in ours if not k.startswith("stages.") and k not in mapped]
    if missing: raise RuntimeError(f"RegAD key map leaves {missing[:5]} unset")
    det.net.load_state_dict({**ours, **mapped})
    return det

REGAD_STAGES = [
    Stage("input: their PIL LANCZOS resize vs ours", differs="their loader: PIL Resize(224, ANTIALIAS) (given (224, 224) here, "
          "their int size keeps the aspect and magnetic_tile is not square); ours: bilinear antialiased resize of the decoded image"),
    *[Stage(f"STN{i} {m} warped map") for m in ("rotation_scale", "affine") for i in (1, 2, 3)],
    *[Stage(f"STN{i} {m} theta") for m in ("rotation_scale", "affine") for i in (1, 2, 3)],
    Stage("f3 after STN3 (backbone + 3 STNs)"),
    Stage("registered layer1 (inverse warp)"),
    Stage("registered layer2 (inverse warp)", differs="ours composes T1^-1 T2^-1 and resamples once; theirs resamples twice "
          "(bilinear, reflection), so theirs interpolates twice"),
    Stage("registered layer3 (inverse warp)", differs="ours: one resampling with the composed inverse; theirs: three in a row"),
    Stage("448-d embedding of the same backbone maps (their embedding_concat vs embed, nearest)"),
    Stage("448-d embedding (registered, concatenated)", differs="the layer2/3 inverse warps above (ours: one resampling "
          "with the composed inverse; theirs: two and three in a row); the concatenation itself agrees (row above)"),
    Stage("encoder z"), Stage("predictor p"),
    Stage("loss (train mode, one step)"),
    Stage("grad STN/encoder/predictor", tol=1e-4, why_tol="sums over 2x196 positions of products of float32 terms; "
          "backward order differs (their BN and conv unfused)"),
    Stage("params after one SGD step (lr 1e-4, momentum 0.9)"),
    Stage("loss with their backbone BN in train mode", differs="their STN.train() also puts the backbone's BN in train mode "
          "(batch statistics, running stats updated); ours keeps the backbone's BN frozen (folded into the convs)"),
    Stage("support augmentations 1-19 in the authors' order (identity, 8 rotations, 8 shifts, flip, grey)"),
    Stage("support augmentations 20-22 (quarter turns)", tol=1e-4, why_tol="theirs: kornia's rotate by 90/180/270 degrees, "
          "a bilinear resampling whose float32 cos/sin are not exactly 0 and 1 (<= 1.4e-5 of the image's range); ours: "
          "torch.rot90, the exact permutation of the pixels"),
    Stage("per-position mean (their embeddings)"),
    Stage("per-position precision (Sigma + 0.01 I)^-1 (their embeddings)", tol=1e-3,
          why_tol="float32 inverse of a rank-21 + 0.01 I matrix: condition number ~1e2..1e4 amplifies rounding; "
          "ours is a Cholesky inverse, theirs torch.linalg.inv"),
    Stage("Mahalanobis before normalisation (their embeddings)", tol=1e-4,
          why_tol="inherits the precision's rounding (see above) through sqrt(d^T S^-1 d)"),
    Stage("end to end: map, same input tensor", differs="the layer2/3 inverse warps (seeded, non-identity STNs): ours "
          "resamples once with the composed inverse, theirs two and three times; at the identity STNs the maps agree "
          "(rows below)"),
    Stage("end to end: image score, same input tensor", differs="as the map"),
    Stage("end to end: map, each side's own input preparation", differs="as above, plus their input: PIL LANCZOS resize "
          "and [0,1] images into the ImageNet network (ours: antialiased bilinear resize, ImageNet mean and std)"),
    Stage("end to end at the identity STNs, [0,1] inputs on both sides: map", tol=1e-4, why_tol="inherits the precision's "
          "float32 rounding (see the precision row) through sqrt(d^T S^-1 d) before upsampling and smoothing"),
    Stage("end to end at the identity STNs, [0,1] inputs on both sides: image score", tol=1e-4, why_tol="as the map"),
]

def _regad_args(mode):
    return types.SimpleNamespace(stn_mode=mode, input_channel=3, img_size=224)

def _regad_their_models(mods, state, mode):
    STN = mods["stn"].stn_net(_regad_args(mode), pretrained=False)
    ENC, PRED = mods["siamese"].Encoder(), mods["siamese"].Predictor()
    for pre, m in (("STN.", STN), ("ENC.", ENC), ("PRED.", PRED)):
        m.load_state_dict({k[len(pre):]: v for k, v in state.items() if k.startswith(pre)})
    return STN.eval(), ENC.eval(), PRED.eval()

def _regad_their_state_keys(mods, mode):
    STN = mods["stn"].stn_net(_regad_args(mode), pretrained=False)
    ENC, PRED = mods["siamese"].Encoder(), mods["siamese"].Predictor()
    ks = []
    for pre, m in (("STN.", STN), ("ENC.", ENC), ("PRED.", PRED)): ks += [(pre + k, s) for k, s in keys_shapes(m.state_dict())]
    return ks

def _mean_std():
    return torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

def regad_ours_outputs(case:dict, fast:bool=False) -> dict:
    "Our side of every RegAD stage, from `case` alone (images, key lists, their embeddings at a few positions): "
    "used by the bench and by tests/test_equivalence.py."
    from fsad_nb.methods.regad import STN, warp, inverse_theta, gaussian_fit, mahalanobis, support_augmentations, \
        registration_optimiser, RegADConfig, registration_loss, registered_embedding
    from fsad_nb.backbones import embed
    out, xs, xq = {}, case["support"], case["query"]
    det = regad_ours(regad_state(case["keys_rotation_scale"]))
    net = det.net.eval()
    with torch.no_grad():                                         # the backbone's maps, the STNs' inputs
        h, feats = (xq - net.mean) / net.std, []
        for stage in net.stages: h = stage(h); feats.append(h)
    for m in ("rotation_scale", "affine"):                         # each STN alone, on the same maps
        st = regad_state(case["keys_" + m], m)
        for i, (c, g) in enumerate(zip((64, 128, 256), (14, 7, 4)), 1):
            s = STN(c, g, m).eval()
            s.load_state_dict({regad_key(k)[len(f"stns.{i-1}."):]: v for k, v in st.items()
                               if k.startswith(f"STN.stn{i}.") and regad_key(k) is not None})
            with torch.no_grad(): w, th = s(feats[i - 1])
            out[f"STN{i} {m} warped map"], out[f"STN{i} {m} theta"] = w, th
    with torch.no_grad():
        fs, Ms = net.register(xq)
        out["f3 after STN3 (backbone + 3 STNs)"] = fs[-1]
        reg = [warp(f, inverse_theta(M)) for f, M in zip(fs, Ms)]
        for i in range(3): out[f"registered layer{i+1} (inverse warp)"] = reg[i]
        out["448-d embedding of the same backbone maps (their embedding_concat vs embed, nearest)"] = embed(feats, mode="nearest")
        out["448-d embedding (registered, concatenated)"] = registered_embedding(net, xq)
        z = net.encoder(fs[-1]); out["encoder z"], out["predictor p"] = z, net.predictor(z)
    net.train()                                                    # one step: queries vs the support (K = 1)
    opt, _ = registration_optimiser(net, RegADConfig(backbone="resnet18", weights=None), 1)
    loss = registration_loss(**net(xq, xs.expand(len(xq), -1, -1, -1)))
    opt.zero_grad(); loss.backward()
    P = dict(net.named_parameters())
    out["loss (train mode, one step)"] = out["loss with their backbone BN in train mode"] = loss.detach()
    out["grad STN/encoder/predictor"] = torch.cat([P[n].grad.flatten() for n in case["head_order"]])
    opt.step()
    out["params after one SGD step (lr 1e-4, momentum 0.9)"] = torch.cat([P[n].detach().flatten() for n in case["head_order"]])
    net.eval()
    aug = support_augmentations(xs)                                 # K = 1: one copy per variant, in the authors' order
    out["support augmentations 1-19 in the authors' order (identity, 8 rotations, 8 shifts, flip, grey)"] = aug[:19]
    out["support augmentations 20-22 (quarter turns)"] = aug[19:]
    mu, prec = gaussian_fit(case["their_support_E"], 0.01)          # their embeddings at the sampled positions
    out["per-position mean (their embeddings)"] = mu.T
    out["per-position precision (Sigma + 0.01 I)^-1 (their embeddings)"] = prec
    out["Mahalanobis before normalisation (their embeddings)"] = mahalanobis(case["their_query_E"], mu, prec)
    out["input: their PIL LANCZOS resize vs ours"] = xq
    if fast: return out                                              # the end-to-end stages need fit + predict
    det.fit(xs); s, maps = det.predict(xq)
    out["end to end: map, same input tensor"], out["end to end: image score, same input tensor"] = torch.tensor(maps), torch.tensor(s)
    out["end to end: map, each side's own input preparation"] = torch.tensor(maps)
    out["input: their PIL LANCZOS resize vs ours"] = xq
    det = regad_ours(regad_identity_state(case["keys_rotation_scale"]))
    det.net.mean.zero_(); det.net.std.fill_(1.)                     # [0,1] images straight in, as their loader gives them
    s, maps = det.fit(xs).predict(xq)
    out["end to end at the identity STNs, [0,1] inputs on both sides: map"] = torch.tensor(maps)
    out["end to end at the identity STNs, [0,1] inputs on both sides: image score"] = torch.tensor(s)
    return out

def _regad_modules():
    import importlib
    return {n: importlib.import_module(m) for n, m in (("stn", "models.stn"), ("siamese", "models.siamese"),
            ("train", "train"), ("test", "test"), ("funcs", "utils.funcs"))}

def regad_theirs(root:Path, case:dict, mode="rotation_scale") -> dict:
    "Run the authors' RegAD code (models/stn.py, models/siamese.py, train.py's train, test.py's test) on `case`; "
    "fills case's key lists, parameter order and their embeddings at the sampled positions."
    out = {}
    with authors_code(root):
        mods = _regad_modules()
        for m in ("rotation_scale", "affine"): case["keys_" + m] = _regad_their_state_keys(mods, m)
        state = regad_state(case["keys_" + mode], mode)
        mean, std = _mean_std()
        norm = lambda x: (x - mean) / std                 # their loader feeds [0,1] images: given ours, normalised
        xs, xq = case["support"], case["query"]
        STN, ENC, PRED = _regad_their_models(mods, state, mode)
        with torch.no_grad():                             # their backbone's maps: the STNs' inputs
            h = STN.maxpool(STN.relu(STN.bn1(STN.conv1(norm(xq)))))
            f1 = STN.layer1(h); f2 = STN.layer2(f1); f3 = STN.layer3(f2)
            cat = mods["funcs"].embedding_concat
            out["448-d embedding of the same backbone maps (their embedding_concat vs embed, nearest)"] = \
                cat(cat(f1, f2, False), f3, False)
        for m in ("rotation_scale", "affine"):
            st = regad_state(case["keys_" + m], m)
            for i, (c, f) in enumerate(zip((64, 128, 256), (f1, f2, f3)), 1):
                s = mods["stn"].STNModule(c, i, _regad_args(m)).eval()
                s.load_state_dict({k[len(f"STN.stn{i}."):]: v for k, v in st.items() if k.startswith(f"STN.stn{i}.")})
                with torch.no_grad(): w, th = s(f)
                out[f"STN{i} {m} warped map"], out[f"STN{i} {m} theta"] = w, th
        with torch.no_grad():
            f3 = STN(norm(xq))
            out["f3 after STN3 (backbone + 3 STNs)"] = f3
            regs = [STN.stn1_output, STN.stn2_output, STN.stn3_output]
            for i in range(3): out[f"registered layer{i+1} (inverse warp)"] = regs[i]
            E = regs[0]
            for r in regs[1:]: E = mods["funcs"].embedding_concat(E, r, False)
            out["448-d embedding (registered, concatenated)"] = E
            z = ENC(f3); out["encoder z"], out["predictor p"] = z, PRED(z)
        # one training step through their train(), fed a loader of one (query [1,B,..], support [1,B,K,..]) batch
        tr, losses = mods["train"], []
        cos = tr.CosLoss
        tr.CosLoss = lambda a, b, Mean=True: (lambda v: (losses.append(v.detach()), v)[1])(cos(a, b, Mean))
        def one_step(bn_train:bool):
            STN, ENC, PRED = _regad_their_models(mods, state, mode)
            bns = [m for n, m in STN.named_modules() if isinstance(m, nn.BatchNorm2d) and not n.startswith("stn")]
            if not bn_train:                                  # their backbone BN frozen, as ours (folded into the convs)
                train0 = STN.train
                STN.train = lambda mode=True: (train0(mode), [b.eval() for b in bns])[0]
            opts = [torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for m in (STN, ENC, PRED)]
            loader = [(norm(xq)[None], norm(xs)[None, None].expand(1, len(xq), -1, -1, -1, -1), None)]
            losses.clear()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                tr.train([STN, ENC, PRED], 1, loader, opts, io.StringIO())
            return (STN, ENC, PRED), 0.5 * losses[0] + 0.5 * losses[1]
        try:
            models, loss = one_step(bn_train=False)
            out["loss with their backbone BN in train mode"] = one_step(bn_train=True)[1]
        finally: tr.CosLoss = cos
        out["loss (train mode, one step)"] = loss
        params = {regad_key(pre + n): p for pre, m in zip(("STN.", "ENC.", "PRED."), models)
                  for n, p in m.named_parameters() if regad_key(pre + n) is not None}
        case["head_order"] = sorted(params)
        out["grad STN/encoder/predictor"] = torch.cat([params[k].grad.flatten() for k in case["head_order"]])
        out["params after one SGD step (lr 1e-4, momentum 0.9)"] = torch.cat([params[k].detach().flatten() for k in case["head_order"]])
        # test(): augmentations, Gaussian, Mahalanobis, smoothing, with recorders around their helpers
        te, B, pos = mods["test"], len(xq), set(case["positions"])
        rec = dict(aug=None, E=[], maha=[], n=0)
        perm, concat, maha = torch.randperm, te.embedding_concat, te.mahalanobis_torch
        STN, ENC, PRED = _regad_their_models(mods, state, mode)
        STN.register_forward_pre_hook(lambda m, a: rec.update(aug=a[0].clone()) if rec["aug"] is None else None)
        def concat_rec(x, y, c):
            z = concat(x, y, False)                       # their use_cuda=True would allocate on a GPU
            if z.shape[1] == 448: rec["E"].append(z)
            return z
        def maha_rec(u, v, ci):
            d = maha(u, v, ci)
            i = rec["n"] // B; rec["n"] += 1
            rec["maha"].append((v, ci, d) if i in pos else (None, None, d))
            return d
        def run_test(sup, qs):
            rec.update(aug=None, E=[], maha=[], n=0)
            loader = [(q[None], None, torch.zeros(1, 1, 224, 224), torch.zeros(1)) for q in qs]
            te.embedding_concat, te.mahalanobis_torch = concat_rec, maha_rec
            torch.randperm = lambda n, *a, **k: torch.arange(n)    # their shuffle of the 22 copies: off, to compare them
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    return torch.tensor(te.test(types.SimpleNamespace(stn_mode=mode), [STN, ENC, PRED], 0, [sup], loader)[0])
            finally: torch.randperm, te.embedding_concat, te.mahalanobis_torch = perm, concat, maha
        maps = run_test(norm(xs), norm(xq))
        P = sorted(case["positions"])
        case["their_support_E"] = rec["E"][0].flatten(2)[:, :, P].clone()
        case["their_query_E"] = rec["E"][1].flatten(2)[:, :, P].clone()
        out["per-position mean (their embeddings)"] = torch.stack([rec["maha"][i * B][0] for i in P], 1)
        out["per-position precision (Sigma + 0.01 I)^-1 (their embeddings)"] = torch.stack([rec["maha"][i * B][1] for i in P])
        out["Mahalanobis before normalisation (their embeddings)"] = torch.tensor(
            [[float(rec["maha"][i * B + b][2]) for i in P] for b in range(B)])
        out["end to end: map, same input tensor"] = maps
        out["end to end: image score, same input tensor"] = maps.flatten(1).amax(1)
        run_test(xs, norm(xq)[:1])                 # the support as their loader gives it ([0,1]: grey of the image itself)
        out["support augmentations 1-19 in the authors' order (identity, 8 rotations, 8 shifts, flip, grey)"] = rec["aug"][:19]
        out["support augmentations 20-22 (quarter turns)"] = rec["aug"][19:]          # unshuffled: their order
        # their own input preparation: PIL LANCZOS to 224 (their Resize with ANTIALIAS), ToTensor, no normalisation
        from torchvision import transforms
        from PIL import Image
        tf = transforms.Compose([transforms.Resize((224, 224), Image.LANCZOS), transforms.ToTensor()])
        load = lambda ps: torch.stack([tf(Image.open(p).convert("RGB")) for p in ps])
        xs2, xq2 = load(case["support_paths"]), load(case["query_paths"])
        out["input: their PIL LANCZOS resize vs ours"] = xq2
        out["end to end: map, each side's own input preparation"] = run_test(xs2, xq2)
        STN, ENC, PRED = _regad_their_models(mods, regad_identity_state(case["keys_" + mode], mode), mode)   # run_test's models
        maps = run_test(xs, xq)                                        # [0,1] images, as their loader gives them
        out["end to end at the identity STNs, [0,1] inputs on both sides: map"] = maps
        out["end to end at the identity STNs, [0,1] inputs on both sides: image score"] = maps.flatten(1).amax(1)
    return out

def regad_case() -> dict:
    "Real magnetic_tile images (one support, a normal and a cracked query) and the Gaussian's sampled positions."
    sup, qry = magnetic_tile(1)
    return dict(support=as_input(sup, 224), query=as_input(qry, 224), support_paths=[str(p) for p in sup],
                query_paths=[str(p) for p in qry], positions=list(range(0, 3136, 197)))

def regad_speed(root, case) -> dict:
    "One training step (2 pairs, K=1) and fit(K=1) + predict(2 images), ours vs theirs, same threads and sizes."
    from fsad_nb.methods.regad import registration_optimiser, RegADConfig, registration_loss
    xs, xq, state = case["support"], case["query"], regad_state(case["keys_rotation_scale"])
    mean, std = _mean_std(); norm = lambda x: (x - mean) / std
    det = regad_ours(state); net = det.net.train()
    opt, _ = registration_optimiser(net, RegADConfig(backbone="resnet18", weights=None), 1)
    def ours_step():
        loss = net.loss(xq, xs.expand(len(xq), -1, -1, -1)); opt.zero_grad(); loss.backward(); opt.step()
    def ours_predict(): det.fit(xs); det._cache = None; det.predict(xq)
    res = {}
    with authors_code(root):
        import importlib
        mods = _regad_modules()
        STN, ENC, PRED = _regad_their_models(mods, state, "rotation_scale")
        opts = [torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for m in (STN, ENC, PRED)]
        loader = [(norm(xq)[None], norm(xs)[None, None].expand(1, len(xq), -1, -1, -1, -1), None)]
        def their_step():
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()): mods["train"].train([STN, ENC, PRED], 1, loader, opts, io.StringIO())
        te = mods["test"]; concat = te.embedding_concat
        def their_predict():
            ql = [(q[None], None, torch.zeros(1, 1, 224, 224), torch.zeros(1)) for q in norm(xq)]
            te.embedding_concat = lambda x, y, c: concat(x, y, False)      # their use_cuda=True: CPU here
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    te.test(types.SimpleNamespace(stn_mode="rotation_scale"), [STN, ENC, PRED], 0, [norm(xs)], ql)
            finally: te.embedding_concat = concat
        res["ours_train_step"], res["theirs_train_step"] = race(ours_step, their_step, 3)
        res["ours_fit_predict"], res["theirs_fit_predict"] = timed(ours_predict, 1, False), timed(their_predict, 1, False)
    res["ratio_train_step"] = res["ours_train_step"] / res["theirs_train_step"]
    res["ratio_fit_predict"] = res["ours_fit_predict"] / res["theirs_fit_predict"]
    return res

REGAD_TENSORS = ("support", "query", "their_support_E", "their_query_E")
REGAD_META = ("keys_rotation_scale", "keys_affine", "head_order", "positions", "support_paths", "query_paths")

def regad_run(root:Path, write:bool=False, speed:bool=False):
    case = regad_case()
    theirs = regad_theirs(root, case)
    ours = regad_ours_outputs(case)
    rows = [row("RegAD", st, ours[st.name], theirs[st.name]) for st in REGAD_STAGES]
    if write: write_fixture("regad", {k: case[k] for k in REGAD_TENSORS}, {k: case[k] for k in REGAD_META},
                            theirs, ours, REGAD_STAGES)
    return rows, (regad_speed(root, case) if speed else None)

# ----------------------------------------------------------------------------------------------------------
# UniAD (You et al., NeurIPS 2022): DIR/UniAD
# ----------------------------------------------------------------------------------------------------------
# Small config so that fixtures stay small; the code is the same as at full size (hidden 256, 4+4 layers, FFN 1024):
UNIAD_SMALL = dict(hidden=64, heads=8, enc_layers=2, dec_layers=2, ff=128)
# Input: the four stage maps (strides 2, 4, 8, 16) of the offline EfficientNet-Lite0 (ImageNet weights ship with
# pip; torchvision's EfficientNet-B4 cannot be downloaded here) on real magnetic_tile images: 16+24+40+112 = 192
# channels at 14x14. Both necks get the same maps.
#
# Key map, theirs (models/reconstructions/uniad.py) -> ours (UniADNet):
#   input_proj / output_proj                 -> proj_in / proj_out
#   pos_embed.row_embed / col_embed          -> pos.row / pos.col
#   transformer.encoder.layers.i.self_attn   -> encoder.i.attn   (in_proj_weight/bias split into q, k, v; out_proj -> o)
#   transformer.encoder.layers.i.linear1/2, norm1/2 -> encoder.i.ff.0 / ff.3, n1 / n2
#   transformer.decoder.layers.i.learned_embed, self_attn, multihead_attn -> decoder.i.query, attn1, attn2
#   transformer.decoder.layers.i.linear1/2, norm1/2/3 -> decoder.i.ff.0 / ff.3, n1 / n2 / n3
#   transformer.decoder.norm                 -> norm
# Their positional embedding is [col_j, row_i] per token, ours [row_i, col_j]: the same family of functions with
# the two halves of the hidden units swapped. The map therefore also permutes the hidden units (P: halves
# swapped) in every weight that reads or writes the hidden width; then ours(x) = theirs(x) exactly, and our
# hidden states are P of theirs.
UNIAD_ATTN = {"self_attn": "attn", "multihead_attn": "attn2"}

def _uniad_perm(d:int) -> torch.Tensor: return torch.cat([torch.arange(d // 2, d), torch.arange(0, d // 2)])

def uniad_map(theirs:dict, d:int) -> dict:
    "Their state dict -> ours (UniADNet), hidden units permuted by P so that the positional embeddings coincide."
    P, out = _uniad_perm(d), {}
    rows = lambda t: t[P]                 # a weight writing the hidden width: permute its output rows
    cols = lambda t: t[:, P]              # a weight reading it: permute its input columns
    for k, v in theirs.items():
        if k.startswith("input_proj."): out["proj_in." + k.split(".")[1]] = rows(v)
        elif k.startswith("output_proj."): out["proj_out." + k.split(".")[1]] = cols(v) if v.dim() == 2 else v
        elif k == "pos_embed.row_embed.weight": out["pos.row.weight"] = v
        elif k == "pos_embed.col_embed.weight": out["pos.col.weight"] = v
        elif k.startswith("transformer.decoder.norm."): out["norm." + k.split(".")[-1]] = rows(v)
        elif k.startswith("transformer."):
            _, part, _, i, mod, *rest = k.split(".")
            pre = f"{'encoder' if part == 'encoder' else 'decoder'}.{i}."
            leaf = rest[-1] if rest else None
            if mod in ("self_attn", "multihead_attn"):
                a = pre + ("attn" if part == "encoder" else ("attn1" if mod == "self_attn" else "attn2"))
                if rest[0] == "in_proj_weight":
                    for n, w in zip("qkv", v.chunk(3)): out[f"{a}.{n}.weight"] = cols(w)
                elif rest[0] == "in_proj_bias":
                    for n, b in zip("qkv", v.chunk(3)): out[f"{a}.{n}.bias"] = b
                else: out[f"{a}.o.{leaf}"] = rows(v)                     # out_proj
            elif mod == "linear1": out[pre + "ff.0." + leaf] = cols(v) if leaf == "weight" else v
            elif mod == "linear2": out[pre + "ff.3." + leaf] = rows(v)
            elif mod.startswith("norm"): out[pre + "n" + mod[4:] + "." + leaf] = rows(v)
            elif mod == "learned_embed": out[pre + "query.weight"] = cols(v)
            else: raise KeyError(k)
        else: raise KeyError(k)
    return out

UNIAD_STAGES = [
    Stage("neck: 4 stage maps -> 14x14 tokens"),                      # both corner-aligned (nn.UpsamplingBilinear2d)
    Stage("positional embedding (hidden units permuted)"),
    Stage("encoder output (memory)"), Stage("decoder output (after the final LayerNorm)"),
    Stage("reconstruction (eval, 7x7 neighbour mask)"),
    Stage("full attention (no mask)"),
    Stage("L2 map 14x14"),
    Stage("map upsampled x16"),                                        # UniADScorer.align_corners = True, as theirs
    Stage("image score: max of 16x16 mean-filtered map, same map"),   # ours: max_scores on our L2 map upsampled as theirs
    Stage("image score end to end (from their tokens)"),
    Stage("feature jitter, B=1, same seed"),
    Stage("feature jitter noise / (alpha ||f|| / C), B=4, sorted"),
    Stage("loss MSE (train mode, dropout 0, no jitter)"),
    Stage("grad after clip 0.1 (one step)"),
    Stage("params after one AdamW step (lr 1e-4, wd 1e-4)"),
    Stage("end to end, EfficientNet-B4: stage-4 map (their B4 vs torchvision's, same weights)", differs="their B4 "
          "(lukemelas) pads stride-2 convolutions TF-'same' (asymmetric) and uses BN eps 1e-3; torchvision's pads "
          "symmetrically with BN eps 1e-5"),
    Stage("end to end, EfficientNet-B4: anomaly map", differs="inherits the backbone's difference (neck and "
          "upsampling agree)"),
    Stage("end to end, EfficientNet-B4: image score", differs="as the map"),
]

def _uniad_their_model(mods, C:int, jitter=True, mask=True, dropout=0.1):
    NS = types.SimpleNamespace
    c = UNIAD_SMALL
    return mods["uniad"].UniAD(inplanes=[C], instrides=[16], feature_size=[14, 14],
        feature_jitter=NS(scale=20.0, prob=1.0) if jitter else None,
        neighbor_mask=NS(neighbor_size=[7, 7], mask=[True, True, True]) if mask else None,
        hidden_dim=c["hidden"], pos_embed_type="learned", save_recon=False, initializer={"method": "xavier_uniform"},
        nhead=c["heads"], num_encoder_layers=c["enc_layers"], num_decoder_layers=c["dec_layers"],
        dim_feedforward=c["ff"], dropout=dropout, activation="relu", normalize_before=False)

UNIAD_STUBS = ("tabulate",)                 # imported by utils/eval_helper.py, used only to print tables

def _stubs(names): return {n: types.ModuleType(n) for n in names if n not in sys.modules}

def _uniad_modules():
    import importlib
    return {"uniad": importlib.import_module("models.reconstructions.uniad"), "mfcn": importlib.import_module("models.necks.mfcn"),
            "eval": importlib.import_module("utils.eval_helper"), "crit": importlib.import_module("utils.criterion_helper")}

def uniad_ours_net(keys, C:int, neighbour:int=7, dropout:float=0.1):
    from fsad_nb.methods.uniad import UniADNet, UniADConfig
    cfg = UniADConfig(weights=None, neighbour=neighbour, dropout=dropout, **UNIAD_SMALL)
    net = UniADNet(C, 14, cfg).eval()
    net.load_state_dict(uniad_map(seeded_state(keys), UNIAD_SMALL["hidden"]))
    return net, cfg

def uniad_features(x):
    "The four Lite0 stage maps (strides 2, 4, 8, 16) of images x: the shared input of both necks."
    from fsad_nb.backbones import FeatureExtractor
    fe = FeatureExtractor("efficientnet_lite0", weights="default", device="cpu", strides=(2, 4, 8, 16))
    with torch.no_grad(): return [f.float() for f in fe(x)]

def uniad_ours_outputs(case:dict, fast:bool=False) -> dict:
    "Our side of every UniAD stage from `case` (images, their key list, their tokens): bench and test."
    from fsad_nb.methods.uniad import as_tokens, feature_jitter, UniADScorer
    from fsad_nb.detector import smooth_maps, max_scores
    out, P = {}, _uniad_perm(UNIAD_SMALL["hidden"])
    fs = uniad_features(case["images"])
    C = sum(f.shape[1] for f in fs)
    out["neck: 4 stage maps -> 14x14 tokens"] = as_tokens(fs, 14).transpose(1, 2).unflatten(2, (14, 14))
    align = case["their_tokens"]                                       # [B,C,14,14], their neck's output
    t = align.flatten(2).transpose(1, 2)
    net, cfg = uniad_ours_net(case["keys"], C)
    with torch.no_grad():
        out["positional embedding (hidden units permuted)"] = net.pos()[:, P]
        o = net(t)
        out["encoder output (memory)"] = o["memory"][..., P]
        out["decoder output (after the final LayerNorm)"] = o["decoded"][..., P]
        rec = o["rec"].transpose(1, 2).unflatten(2, (14, 14))
        out["reconstruction (eval, 7x7 neighbour mask)"] = rec
        nf, _ = uniad_ours_net(case["keys"], C, neighbour=0)
        out["full attention (no mask)"] = nf(t)["rec"].transpose(1, 2).unflatten(2, (14, 14))
        L2 = (o["rec"] - t).norm(dim=-1).view(len(t), 14, 14)
        out["L2 map 14x14"] = L2
        up = smooth_maps(L2, 224, 0.0, UniADScorer.align_corners)          # the scorer's upsampling
        out["map upsampled x16"] = up
        same = F.interpolate(L2[:, None], scale_factor=16, mode="bilinear", align_corners=True)[:, 0]   # their upsampling
        out["image score: max of 16x16 mean-filtered map, same map"] = max_scores(same, 16)
        out["image score end to end (from their tokens)"] = max_scores(up, 16)
    g = torch.Generator().manual_seed(7)
    out["feature jitter, B=1, same seed"] = feature_jitter(t[:1], 20.0, 1.0, g)
    g = torch.Generator().manual_seed(7)
    n = (feature_jitter(t, 20.0, 1.0, g) - t) / (t.norm(dim=-1, keepdim=True) / C * 20.0)
    out["feature jitter noise / (alpha ||f|| / C), B=4, sorted"] = n.flatten().sort().values
    net, cfg = uniad_ours_net(case["keys"], C, dropout=0.0)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    loss = F.mse_loss(net(t)["rec"], t)
    opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
    out["loss MSE (train mode, dropout 0, no jitter)"] = loss.detach()
    Pm = dict(net.named_parameters())
    out["grad after clip 0.1 (one step)"] = torch.cat([Pm[k].grad.flatten() for k in case["order"]])
    opt.step()
    out["params after one AdamW step (lr 1e-4, wd 1e-4)"] = torch.cat([Pm[k].detach().flatten() for k in case["order"]])
    if fast: return out                                              # end to end: EfficientNet-B4 on both sides
    f4, maps, s = uniad_b4_ours(case)
    out["end to end, EfficientNet-B4: stage-4 map (their B4 vs torchvision's, same weights)"] = f4
    out["end to end, EfficientNet-B4: anomaly map"], out["end to end, EfficientNet-B4: image score"] = maps, s
    return out

def b4_state_from_theirs(their_keys) -> dict:
    "torchvision efficientnet_b4 weights from the seeded weights of their (lukemelas) B4: the 610 tensors in order."
    import torchvision
    tv = torchvision.models.efficientnet_b4(weights=None).state_dict()
    theirs = seeded_state(their_keys)
    a = [k for k in theirs if "num_batches" not in k]; b = [k for k in tv if "num_batches" not in k]
    if len(a) != len(b) or any(theirs[i].shape != tv[j].shape for i, j in zip(a, b)): raise RuntimeError("B4 maps differ")
    return {**tv, **{j: theirs[i] for i, j in zip(a, b)}}

def uniad_b4_ours(case:dict, C:int=272):
    "Our UniAD detector (small transformer) on torchvision's EfficientNet-B4 with their seeded B4 weights; map + score."
    from fsad_nb.methods.uniad import UniAD, UniADConfig
    from fsad_nb.backbones import FeatureExtractor
    with tempfile.TemporaryDirectory() as d:
        torch.save(b4_state_from_theirs(case["keys_b4"]), Path(d)/"b4.pt")
        det = UniAD(UniADConfig(backbone="efficientnet_b4", weights=str(Path(d)/"b4.pt"), **UNIAD_SMALL), device="cpu")
        fe = FeatureExtractor("efficientnet_b4", weights=str(Path(d)/"b4.pt"), device="cpu", strides=(2, 4, 8, 16))
    det.net.load_state_dict(uniad_map(seeded_state(case["keys_b4_net"]), UNIAD_SMALL["hidden"]))
    det.meta_state = copy.deepcopy(det.net.state_dict())
    x = case["images"]
    with torch.no_grad(): f4 = fe(x)[-1]
    det.fit(x[:2]); s, maps = det.predict(x[2:])
    return f4, torch.tensor(maps), torch.tensor(s)

def uniad_b4_theirs(mods, case:dict):
    "Their B4 backbone, MFCN neck, UniAD (small) and evaluator on the same images, normalised as their dataset does."
    import importlib
    B = importlib.import_module("models.backbones.efficientnet")
    bb = B.efficientnet_b4(False, outblocks=[1, 5, 9, 21], outstrides=[2, 4, 8, 16]).eval()
    case["keys_b4"] = keys_shapes(bb.state_dict())
    bb.load_state_dict(seeded_state(case["keys_b4"]))
    mean, std = _mean_std()
    x = (case["images"] - mean) / std
    with torch.no_grad():
        fs = bb({"image": x})["features"]
        neck = mods["mfcn"].MFCN(inplanes=[f.shape[1] for f in fs], outplanes=[sum(f.shape[1] for f in fs)],
                                 instrides=[2, 4, 8, 16], outstrides=[16])
        align = neck({"features": [f[2:] for f in fs]})["feature_align"]
        m = _uniad_their_model(mods, align.shape[1]).eval()
        case["keys_b4_net"] = keys_shapes(m.state_dict())
        m.load_state_dict(seeded_state(case["keys_b4_net"]))
        pred = m({"feature_align": align})["pred"][:, 0]
        score = torch.tensor(mods["eval"].EvalImageMax.encode_pred(pred.numpy(), [16, 16]))
    return fs[-1], pred, score

def uniad_theirs(root:Path, case:dict) -> dict:
    "The authors' MFCN neck, UniAD reconstruction, jitter, map, image score (EvalImageMax) and one training step."
    import random
    out = {}
    fs = uniad_features(case["images"])
    C = sum(f.shape[1] for f in fs)
    with authors_code(root, _stubs(UNIAD_STUBS)):
        mods = _uniad_modules()
        neck = mods["mfcn"].MFCN(inplanes=[f.shape[1] for f in fs], outplanes=[C], instrides=[2, 4, 8, 16], outstrides=[16])
        align = neck({"features": fs})["feature_align"]
        out["neck: 4 stage maps -> 14x14 tokens"] = align
        case["their_tokens"] = align
        m = _uniad_their_model(mods, C).eval()
        case["keys"] = keys_shapes(m.state_dict())
        m.load_state_dict(seeded_state(case["keys"]))
        rec_ = {}
        m.transformer.register_forward_hook(lambda mod, a, o: rec_.update(dec=o[0], enc=o[1]))
        m.upsample.register_forward_pre_hook(lambda mod, a: rec_.update(L2=a[0]))
        with torch.no_grad():
            out["positional embedding (hidden units permuted)"] = m.pos_embed(align)
            o = m({"feature_align": align})
            out["encoder output (memory)"] = rec_["enc"].transpose(0, 1)
            out["decoder output (after the final LayerNorm)"] = rec_["dec"].transpose(0, 1)
            out["reconstruction (eval, 7x7 neighbour mask)"] = o["feature_rec"]
            mf = _uniad_their_model(mods, C, mask=False).eval(); mf.load_state_dict(seeded_state(case["keys"]))
            out["full attention (no mask)"] = mf({"feature_align": align})["feature_rec"]
            out["L2 map 14x14"] = rec_["L2"][:, 0]
            out["map upsampled x16"] = o["pred"][:, 0]
            score = torch.tensor(mods["eval"].EvalImageMax.encode_pred(o["pred"][:, 0].numpy(), [16, 16]))
            out["image score: max of 16x16 mean-filtered map, same map"] = score
            out["image score end to end (from their tokens)"] = score
            tok = align.flatten(2).permute(2, 0, 1)                      # (h w) b c, as their rearrange
            torch.manual_seed(7); random.seed(0)
            out["feature jitter, B=1, same seed"] = m.add_jitter(tok[:, :1], 20.0, 1.0).permute(1, 0, 2)
            torch.manual_seed(7); random.seed(0)
            n = (m.add_jitter(tok, 20.0, 1.0) - tok) / (tok.norm(dim=-1, keepdim=True) / C * 20.0)
            out["feature jitter noise / (alpha ||f|| / C), B=4, sorted"] = n.flatten().sort().values
        # one training step as tools/train_val.py runs it: FeatureMSELoss, backward, clip 0.1, AdamW (config.yaml)
        mt = _uniad_their_model(mods, C, jitter=False, dropout=0.0); mt.load_state_dict(seeded_state(case["keys"]))
        mt.train()
        opt = torch.optim.AdamW(mt.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4)
        loss = mods["crit"].FeatureMSELoss(1.0)(mt({"feature_align": align}))
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(mt.parameters(), 0.1)
        out["loss MSE (train mode, dropout 0, no jitter)"] = loss.detach()
        mine = uniad_map({k: v for k, v in mt.state_dict().items()}, UNIAD_SMALL["hidden"])
        grads = uniad_map({k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in mt.named_parameters()}, UNIAD_SMALL["hidden"])
        case["order"] = sorted(grads)
        out["grad after clip 0.1 (one step)"] = torch.cat([grads[k].flatten() for k in case["order"]])
        opt.step()
        after = uniad_map(dict(mt.named_parameters()), UNIAD_SMALL["hidden"])
        out["params after one AdamW step (lr 1e-4, wd 1e-4)"] = torch.cat([after[k].detach().flatten() for k in case["order"]])
        f4, pred, score = uniad_b4_theirs(mods, case)
        out["end to end, EfficientNet-B4: stage-4 map (their B4 vs torchvision's, same weights)"] = f4
        out["end to end, EfficientNet-B4: anomaly map"], out["end to end, EfficientNet-B4: image score"] = pred, score
    return out

def uniad_case() -> dict:
    sup, qry = magnetic_tile(2)
    return dict(images=as_input(sup + qry, 224), paths=[str(p) for p in sup + qry])

def uniad_speed(root, case) -> dict:
    "Reconstruction network only (small config, batch 4 of 14x14 tokens): one training step and one predict batch."
    C = case["their_tokens"].shape[1]
    align = case["their_tokens"]; t = align.flatten(2).transpose(1, 2)
    net, cfg = uniad_ours_net(case["keys"], C)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-4)
    from fsad_nb.methods.uniad import feature_jitter
    def ours_step():
        net.train(); loss = F.mse_loss(net(feature_jitter(t, 20.0))["rec"], t)
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(net.parameters(), 0.1); opt.step()
    def ours_pred():
        net.eval()
        with torch.no_grad(): (net(t)["rec"] - t).norm(dim=-1)
    res = {}
    with authors_code(root, _stubs(UNIAD_STUBS)):
        mods = _uniad_modules()
        m = _uniad_their_model(mods, C); m.load_state_dict(seeded_state(case["keys"]))
        o2 = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=1e-4)
        crit = mods["crit"].FeatureMSELoss(1.0)
        def their_step():
            m.train(); loss = crit(m({"feature_align": align}))
            o2.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 0.1); o2.step()
        def their_pred():
            m.eval()
            with torch.no_grad(): m({"feature_align": align})
        res["ours_train_step"], res["theirs_train_step"] = race(ours_step, their_step, 5)
        res["ours_predict"], res["theirs_predict"] = race(ours_pred, their_pred, 5)
    res["ratio_train_step"] = res["ours_train_step"] / res["theirs_train_step"]
    res["ratio_predict"] = res["ours_predict"] / res["theirs_predict"]
    return res

UNIAD_TENSORS = ("images", "their_tokens")
UNIAD_META = ("keys", "order", "paths", "keys_b4", "keys_b4_net")

def uniad_run(root:Path, write:bool=False, speed:bool=False):
    case = uniad_case()
    theirs = uniad_theirs(root, case)
    ours = uniad_ours_outputs(case)
    rows = [row("UniAD", st, ours[st.name], theirs[st.name]) for st in UNIAD_STAGES]
    if write: write_fixture("uniad", {k: case[k] for k in UNIAD_TENSORS}, {k: case[k] for k in UNIAD_META},
                            theirs, ours, UNIAD_STAGES)
    return rows, (uniad_speed(root, case) if speed else None)

# ----------------------------------------------------------------------------------------------------------
# DFD (Bai et al., 2024): DIR/DFD; SimpleNet's discriminator and adaptor are the same classes (see DEFAULTS)
# ----------------------------------------------------------------------------------------------------------
# Key map, theirs (model/utils.py) -> ours (DFDNets):
#   pre_projection.layers.0fc            -> adaptor
#   discriminator_gaussian.body.block1.{0,1}, tail -> D_G.body.{0,1}, D_G.tail
#   discriminator_perlin.mlp.{0,1}       -> D_P.mlp.{0,1};   .tail -> D_P.tail
#   discriminator_perlin.ViT.cls_token / pos_embed / norm -> D_P.cls / pos / norm
#   discriminator_perlin.ViT.blocks.0.norm1/norm2 -> D_P.block.norm1/norm2
#   discriminator_perlin.ViT.blocks.0.attn.qkv    -> D_P.block.self_attn.in_proj_weight/bias
#   discriminator_perlin.ViT.blocks.0.attn.proj   -> D_P.block.self_attn.out_proj
#   discriminator_perlin.ViT.blocks.0.mlp.fc1/fc2 -> D_P.block.linear1/linear2
# Backbone: torchvision's wide_resnet50_2 (theirs: script/backbones.py) with seeded weights on both sides.
DFD_MAP = [("pre_projection.layers.0fc.", "adaptor."), ("discriminator_gaussian.body.block1.", "D_G.body."),
           ("discriminator_gaussian.tail.", "D_G.tail."), ("discriminator_perlin.mlp.", "D_P.mlp."),
           ("discriminator_perlin.tail.", "D_P.tail."), ("discriminator_perlin.ViT.cls_token", "D_P.cls"),
           ("discriminator_perlin.ViT.pos_embed", "D_P.pos"), ("discriminator_perlin.ViT.norm.", "D_P.norm."),
           ("discriminator_perlin.ViT.blocks.0.norm", "D_P.block.norm"),
           ("discriminator_perlin.ViT.blocks.0.attn.qkv.weight", "D_P.block.self_attn.in_proj_weight"),
           ("discriminator_perlin.ViT.blocks.0.attn.qkv.bias", "D_P.block.self_attn.in_proj_bias"),
           ("discriminator_perlin.ViT.blocks.0.attn.proj.", "D_P.block.self_attn.out_proj."),
           ("discriminator_perlin.ViT.blocks.0.mlp.fc1.", "D_P.block.linear1."),
           ("discriminator_perlin.ViT.blocks.0.mlp.fc2.", "D_P.block.linear2.")]
DFD_PARTS = ("pre_projection", "discriminator_gaussian", "discriminator_perlin")
DFD_STUBS = ("faiss", "imgaug", "imgaug.augmenters")    # imported by their modules, unused by the stages checked

def dfd_key(k:str) -> str|None:
    for a, b in DFD_MAP:
        if k.startswith(a): return b + k[len(a):]
    return None

def dfd_state(keys) -> dict:
    "Seeded weights of their three trained parts (keys prefixed by the part's attribute name)."
    sd = seeded_state(keys)
    for k in sd:
        if k.endswith("pos_embed") or k.endswith("cls_token"): sd[k] = 0.02 * sd[k] * math.sqrt(sd[k].shape[-1])
    return sd

def _wrn_state(keys) -> dict: return seeded_state(keys)

def dfd_ours_nets(keys, grid=(32, 32)):
    from fsad_nb.methods.dfd import build_nets, DFDConfig
    nets = build_nets(1536, grid, DFDConfig(weights=None), seed=0)
    mapped = {dfd_key(k): v for k, v in dfd_state(keys).items() if dfd_key(k) is not None}
    missing = set(nets.state_dict()) - set(mapped)
    if missing: raise RuntimeError(f"DFD key map leaves {sorted(missing)[:5]} unset")
    nets.load_state_dict(mapped)
    return nets.eval()

def dfd_extractor(wrn_keys):
    import torchvision
    from fsad_nb.backbones import FeatureExtractor
    net = torchvision.models.wide_resnet50_2(weights=None)
    net.load_state_dict(_wrn_state(wrn_keys))
    with tempfile.TemporaryDirectory() as d:
        torch.save(net.state_dict(), Path(d)/"wrn.pt")
        return FeatureExtractor("wide_resnet50_2", weights=str(Path(d)/"wrn.pt"), device="cpu")

def dfd_tokens(B=2, T=1024, C=1536):
    "Seeded stand-in tokens for the module stages (the real image enters the split, aggregation and map stages)."
    return seeded_tensor("dfd.tokens", (B * T, C)) * math.sqrt(C) * 0.5

def dfd_mask(B=2, H=256):
    "A pseudo-anomaly mask: a rectangle in the first image, none in the second."
    M = torch.zeros(B, 1, H, H); M[0, :, 40:90, 100:180] = 1
    return M

def _np_img(x): return x[0].permute(1, 2, 0).numpy().astype(np.float32)    # [1,3,H,W] -> HxWx3

DFD_STAGES = [
    Stage("frequency split: low band (pyrUp(pyrDown))", tol=1e-5),
    Stage("frequency split: high band (image - low)", tol=1e-5),
    Stage("aggregation to 1536 (layer2 + layer3, 3x3)"),           # ours with dim=1536 (the paper preset)
    Stage("projection / adaptor"), Stage("Gaussian discriminator (eval)"),
    Stage("Perlin discriminator with its ViT block (eval)"),
    Stage("Gaussian hinge loss, same noise (train mode)"),
    Stage("Perlin loss (pixel hinge + image MSE), same scores", differs="theirs upsamples the token scores to "
          "pixels before the hinge; ours stays on the token grid with max-pooled masks"),
    Stage("similarity loss (masked tokens)"),
    Stage("smoothing of the same upsampled map"),
    Stage("smoothing of the same upsampled map, >= 16 px from the border"),
    Stage("Gaussian-branch map before min-max (same tokens)"), Stage("Perlin-branch map before min-max (same tokens)"),
    Stage("end to end: Gaussian-branch map from the image"),       # ours with dim=1536 (the paper preset)
]

def _dfd_modules():
    import importlib
    return {"utils": importlib.import_module("model.utils"), "data": importlib.import_module("data.data_loader")}

def _dfd_stubs():
    st = _stubs(DFD_STUBS)
    if "imgaug" in st: st["imgaug"].augmenters = st["imgaug.augmenters"]
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = lambda *a, **k: types.SimpleNamespace(add_scalar=lambda *a, **k: None)  # writes no log folder
    st["torch.utils.tensorboard"] = tb
    return st

def _dfd_their_model(mods, backbone, keys=None):
    m = mods["utils"].model("cpu")
    with contextlib.redirect_stdout(io.StringIO()):
        m.load(backbone=backbone, layers_to_extract_from=["layer2", "layer3"], device="cpu", input_shape=(3, 256, 256),
               pretrain_embed_dimension=1536, target_embed_dimension=1536, patchsize=3, patchstride=1, epochs=1, meta_epochs=20)
    parts = {p: getattr(m, p) for p in DFD_PARTS}
    if keys is None: keys = [(f"{p}.{k}", s) for p in DFD_PARTS for k, s in keys_shapes(parts[p].state_dict())]
    sd = dfd_state(keys)
    for p, mod in parts.items(): mod.load_state_dict({k[len(p) + 1:]: v for k, v in sd.items() if k.startswith(p + ".")})
    return m, keys

def dfd_theirs(root:Path, case:dict) -> dict:
    import torchvision
    from scipy.ndimage import gaussian_filter
    out, x = {}, case["image"]
    with authors_code(root, _dfd_stubs()):
        mods = _dfd_modules()
        lap, up = mods["data"].FD(_np_img(x))                       # their split of one float32 HxWx3 image
        out["frequency split: low band (pyrUp(pyrDown))"] = torch.from_numpy(up).permute(2, 0, 1)[None]
        out["frequency split: high band (image - low)"] = torch.from_numpy(lap).permute(2, 0, 1)[None]
        wrn = torchvision.models.wide_resnet50_2(weights=None)
        case["wrn_keys"] = keys_shapes(wrn.state_dict())
        wrn.load_state_dict(_wrn_state(case["wrn_keys"])); wrn.eval()
        m, case["keys"] = _dfd_their_model(mods, wrn)
        mean, std = _mean_std()
        norm = lambda t: (t - mean) / std                           # their ToTensor + Normalize
        with torch.no_grad():
            feats, shapes = m._embed(norm(x))
            out["aggregation to 1536 (layer2 + layer3, 3x3)"] = feats.view(1, 32, 32, 1536)
            for p in DFD_PARTS: getattr(m, p).eval()
            tok = case["tokens"]
            q = m.pre_projection(tok)
            out["projection / adaptor"] = q
            out["Gaussian discriminator (eval)"] = m.discriminator_gaussian(q)[:, 0]
            out["Perlin discriminator with its ViT block (eval)"] = m.discriminator_perlin(q, 2)[..., 0]
        # losses in train mode, as train_module runs them
        for p in DFD_PARTS: getattr(m, p).train()
        noise = []
        normal0 = torch.normal
        torch.normal = lambda *a, **k: (lambda n: (noise.append(n), n)[1])(normal0(*a, **k))
        try:
            q = m.pre_projection(tok)
            with torch.random.fork_rng():
                torch.manual_seed(5)
                out["Gaussian hinge loss, same noise (train mode)"] = m.cal_loss_gaussian(q).detach()
        finally: torch.normal = normal0
        if not torch.equal(noise[0], case["noise"]): raise RuntimeError("dfd_noise no longer reproduces their draw")
        with torch.no_grad():
            s = m.discriminator_perlin(q, 2)
            M, B = case["mask"], 2
            anomaly = torch.tensor([[1.], [0.]])
            out["Perlin loss (pixel hinge + image MSE), same scores"] = m.cal_loss_perlin(s, M.flatten(), [[32, 32]], B, anomaly)
            qa = m.pre_projection(case["tokens_aug"])
            am = F.max_pool2d(M, (8, 8)).reshape(-1, 1)
            out["similarity loss (masked tokens)"] = m.sim_loss(q, qa, am)
        # maps before their test-set min-max: one image, both bands, both branches (predict's per-image part), with
        # the seeded weights again (the train-mode loss calls above moved their BatchNorm running statistics)
        sd = dfd_state(case["keys"])
        for p in DFD_PARTS:
            getattr(m, p).load_state_dict({k[len(p) + 1:]: v for k, v in sd.items() if k.startswith(p + ".")}); getattr(m, p).eval()
        with torch.no_grad():
            t1 = tok[:1024]; t2 = case["tokens_aug"][:1024]
            ql, qr = m.pre_projection(t1), m.pre_projection(t2)
            ps = [[[32, 32]]]
            out["Gaussian-branch map before min-max (same tokens)"] = torch.from_numpy(
                m.cal_map(-m.discriminator_gaussian(qr), ps[0]) + m.cal_map(-m.discriminator_gaussian(ql), ps[0]))
            out["Perlin-branch map before min-max (same tokens)"] = torch.from_numpy(
                m.cal_map(-m.discriminator_perlin(qr, 1), ps[0]) + m.cal_map(-m.discriminator_perlin(ql, 1), ps[0]))
            up_ = F.interpolate(case["smooth_in"][None, None], size=256, mode="bilinear", align_corners=False)[0, 0].numpy()
            out["smoothing of the same upsampled map"] = torch.from_numpy(gaussian_filter(up_, sigma=4))
            out["smoothing of the same upsampled map, >= 16 px from the border"] = out["smoothing of the same upsampled map"][16:-16, 16:-16]
            # end to end from the image: their FD bands (lab = high, res = low), normalised, embedded, projected, D_G
            fl, _ = m._embed(norm(out["frequency split: high band (image - low)"]))
            fr, _ = m._embed(norm(out["frequency split: low band (pyrUp(pyrDown))"]))
            out["end to end: Gaussian-branch map from the image"] = torch.from_numpy(
                m.cal_map(-m.discriminator_gaussian(m.pre_projection(fr)), ps[0])
                + m.cal_map(-m.discriminator_gaussian(m.pre_projection(fl)), ps[0]))
        case["_model"] = m
    return out

def dfd_ours_outputs(case:dict, fast:bool=False) -> dict:
    from fsad_nb.frequency import frequency_split
    from fsad_nb.backbones import patch_features
    from fsad_nb.detector import smooth_maps
    from fsad_nb.methods import dfd as D
    out, x = {}, case["image"]
    low, high = frequency_split(x)
    out["frequency split: low band (pyrUp(pyrDown))"], out["frequency split: high band (image - low)"] = low, high
    if not fast:                                                      # the backbone: slow on a CPU
        fe = dfd_extractor(case["wrn_keys"])
        with torch.no_grad(): out["aggregation to 1536 (layer2 + layer3, 3x3)"] = patch_features(fe, x, (1, 2), 3, dim=1536).permute(0, 2, 3, 1)
    nets = dfd_ours_nets(case["keys"])
    tok = case["tokens"]
    with torch.no_grad():
        q = nets.adaptor(tok)
        out["projection / adaptor"] = q
        out["Gaussian discriminator (eval)"] = nets.D_G(q[None])[0]
        out["Perlin discriminator with its ViT block (eval)"] = nets.D_P(q.view(2, 1024, -1), (32, 32))
    nets.train()
    q = nets.adaptor(tok)
    fn0 = D.feature_noise
    D.feature_noise = lambda f, sigma, generator=None: f + case["noise"]          # their draw, to compare the formula
    try: out["Gaussian hinge loss, same noise (train mode)"] = D.gaussian_loss(nets.D_G, q[None], 0.015, 0.5).detach()
    finally: D.feature_noise = fn0
    with torch.no_grad():
        m = D.grid_mask(case["mask"], (32, 32))
        if not fast:                                                 # fast: one ViT pass only (the eval stage)
            s = nets.D_P(q.view(2, 1024, -1), (32, 32))
            out["Perlin loss (pixel hinge + image MSE), same scores"] = D.perlin_loss(s, m, torch.tensor([1., 0.]), 0.5)
        qa = nets.adaptor(case["tokens_aug"])
        out["similarity loss (masked tokens)"] = D.similarity_loss(qa.view(2, 1024, -1), q.view(2, 1024, -1), m, "push")
    nets = dfd_ours_nets(case["keys"])                    # the seeded weights again (train mode moved BatchNorm's statistics)
    with torch.no_grad():
        E = torch.stack([tok[:1024], case["tokens_aug"][:1024]]).view(1, 2, 32, 32, -1)   # [N=1, bands=2, h, w, C]
        if fast: nets.D_P = None
        g, p = D.DFDScorer(None, nets, {}, D.DFDConfig(weights=None)).branch_scores(E)
        out["Gaussian-branch map before min-max (same tokens)"] = smooth_maps(g.view(1, 32, 32), 256, 4.0)[0]
        if p is not None: out["Perlin-branch map before min-max (same tokens)"] = smooth_maps(p.view(1, 32, 32), 256, 4.0)[0]
        out["smoothing of the same upsampled map"] = smooth_maps(case["smooth_in"][None], 256, 4.0)[0]
        out["smoothing of the same upsampled map, >= 16 px from the border"] = out["smoothing of the same upsampled map"][16:-16, 16:-16]
        if fast: return out                                          # end to end: the backbone on both bands
        cfg = D.DFDConfig(backbone="wide_resnet50_2", weights=None, dim=1536)     # the paper preset's tokens
        E = D.band_tokens(fe, x, cfg); grid = E.shape[2:4]                        # [1, 2, h, w, C]: low, high
        g, _ = D.DFDScorer(fe, nets, {}, cfg).branch_scores(E)
        out["end to end: Gaussian-branch map from the image"] = smooth_maps(g.view(1, *grid), 256, 4.0)[0]
    return out

def dfd_noise(shape) -> torch.Tensor:
    "Their Gaussian noise draw after torch.manual_seed(5): cal_loss_gaussian's randint, then torch.normal(0, 0.015)."
    with torch.random.fork_rng():
        torch.manual_seed(5); torch.randint(0, 1, (shape[0],))
        return torch.normal(0, 0.015, tuple(shape))

def dfd_seeded(case:dict) -> dict:
    "The seeded parts of a DFD case: stand-in tokens, their augmented copy, a mask, a map to smooth, the noise."
    tok = dfd_tokens()
    case.update(tokens=tok, tokens_aug=tok + 0.3 * seeded_tensor("dfd.tokens_aug", tok.shape) * tok.std(), mask=dfd_mask(),
                smooth_in=seeded_tensor("dfd.map", (32, 32)), noise=dfd_noise(tok.shape))
    return case

def dfd_case() -> dict:
    _, qry = magnetic_tile(1)
    return dfd_seeded(dict(image=as_input(qry[1:], 256), paths=[str(qry[1])]))

def dfd_ours_from_fixture(case:dict, fast:bool=False) -> dict: return dfd_ours_outputs(dfd_seeded(case), fast)

def dfd_speed(root, case) -> dict:
    "One training step (batch 2, both bands, both discriminators, backbone included) and one predict of 1 image."
    from fsad_nb.methods import dfd as D
    from fsad_nb.detector import smooth_maps
    x2 = case["image"].expand(2, -1, -1, -1).contiguous()
    fe = dfd_extractor(case["wrn_keys"]); nets = dfd_ours_nets(case["keys"]).train()
    cfg = D.DFDConfig(backbone="wide_resnet50_2", weights=None)
    opt_a, opt_d = D.optimisers(nets, cfg)[:2]
    M = case["mask"]
    def ours_step():
        Pn, Pa = D.band_tokens(fe, x2, cfg), D.band_tokens(fe, x2, cfg); grid = tuple(Pn.shape[2:4])
        data = dict(normal=Pn, anomalous=Pa, mask=D.grid_mask(M, grid), label=torch.tensor([1., 0.]), grid=grid)
        loss, _ = D.total_loss(nets, data, torch.arange(2), cfg, 0.015)
        opt_a.zero_grad(); opt_d.zero_grad(); loss.backward(); opt_a.step(); opt_d.step()
    def ours_predict():
        with torch.no_grad():
            E = D.band_tokens(fe, case["image"], cfg); grid = E.shape[2:4]
            g, p = D.DFDScorer(fe, nets.eval(), {}, cfg).branch_scores(E)
            smooth_maps(g.view(1, *grid), 256, 4.0); smooth_maps(p.view(1, *grid), 256, 4.0)
        nets.train()
    res = {}
    with authors_code(root, _dfd_stubs()):
        mods = _dfd_modules()
        import torchvision
        wrn = torchvision.models.wide_resnet50_2(weights=None); wrn.load_state_dict(_wrn_state(case["wrn_keys"])); wrn.eval()
        m, _ = _dfd_their_model(mods, wrn, case["keys"])
        mean, std = _mean_std()
        xn = (x2 - mean) / std
        item = dict(anomaly_mask=M, has_anomaly=torch.tensor([[1.], [0.]]), lab=xn, res=xn, lab_aug=xn, res_aug=xn)
        def their_step():
            with contextlib.redirect_stderr(io.StringIO()): m.train_module([item])
        sample = dict(mask=torch.zeros(1, 1, 256, 256), lab=xn[:1], res=xn[:1])
        def their_predict():
            with contextlib.redirect_stderr(io.StringIO()), warnings_off(): m.predict([sample, sample])
        res["ours_train_step"], res["theirs_train_step"] = race(ours_step, their_step, 1)
        res["ours_predict"], res["theirs_predict"] = race(ours_predict, their_predict, 1)
        res["theirs_predict"] /= 2                                     # their predict ran 2 images
    res["ratio_train_step"] = res["ours_train_step"] / res["theirs_train_step"]
    res["ratio_predict"] = res["ours_predict"] / res["theirs_predict"]
    return res

@contextlib.contextmanager
def warnings_off():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore"); yield

DFD_TENSORS = ("image",)
DFD_META = ("keys", "wrn_keys", "paths")

def dfd_run(root:Path, write:bool=False, speed:bool=False):
    case = dfd_case()
    theirs = dfd_theirs(root, case)
    ours = dfd_ours_outputs(case)
    rows = [row("DFD", st, ours[st.name], theirs[st.name]) for st in DFD_STAGES]
    if write: write_fixture("dfd", {k: case[k] for k in DFD_TENSORS}, {k: case[k] for k in DFD_META}, theirs, ours, DFD_STAGES)
    return rows, (dfd_speed(root, case) if speed else None)

def _their_input(paths, size:int) -> torch.Tensor:
    "Their loader's pixels: PIL LANCZOS resize (to size x size here; their int size keeps the aspect ratio, which the "
    "non-square magnetic tiles would not survive), ToTensor: [0, 1], no normalisation."
    from PIL import Image
    load = lambda p: np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.LANCZOS), dtype=np.float32) / 255
    return torch.stack([torch.from_numpy(load(p)).permute(2, 0, 1) for p in paths])

def _zero_one_input(det):
    "Their network input: [0, 1] images straight into the ImageNet backbone (no mean and std)."
    det.net.mean.zero_(); det.net.std.fill_(1.)

REGAD_EFFECTS = {"fsad_nb": {},
                 "authors' input: [0, 1] images (no ImageNet mean and std)": dict(setup=_zero_one_input),
                 "authors' input: PIL LANCZOS resize": dict(load=_their_input)}

def _before(code:Path, K:int, rounds:int, size:int) -> dict:
    "fsad_nb's own numbers with the library of another checkout (`code`), in a fresh one-thread process."
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, __file__, "--official", ".", "--effects", "--code", str(code), "--json", f"{d}/e.json"]
        import subprocess; subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(Path(d, "e.json").read_text())["regad"]["fsad_nb"]

def regad_effects(K:int=2, rounds:int=3, size:int=224, only_ours:bool=False, before:Path|None=None) -> dict:
    "Each remaining RegAD difference's effect on magnetic_tile (untrained RegAD: identity STNs, the offline Lite0): image "
    "and pixel AUROC of ours and of ours with that one piece as in the authors' code, over `rounds` support draws; "
    "`before`: also fsad_nb at that checkout (the code before the fixes)."
    import fsad_nb.methods.regad as R
    from fsad_nb.datasets import dataset
    from fsad_nb.data import MVTecLayout, stack_split, normal_image_paths, load_images
    from fsad_nb.metrics import image_auroc, pixel_auroc
    root = dataset("magnetic_tile")
    ds = MVTecLayout(root.parent, root.name, "test", size=size)
    X, M, y = stack_split(ds)
    pool = normal_image_paths(root)
    res = {}
    for name, v in (dict(fsad_nb={}) if only_ours else REGAD_EFFECTS).items():
        det = R.RegAD(R.RegADConfig(), device="cpu")
        if "setup" in v: v["setup"](det)
        Xv = v["load"](ds.paths, size) if "load" in v else X
        for r in range(rounds):
            g = torch.Generator().manual_seed(r)
            paths = [pool[i] for i in torch.randperm(len(pool), generator=g)[:K].tolist()]
            det.fit(v["load"](paths, size) if "load" in v else load_images(paths, size)); s, maps = det.predict(Xv)
            res.setdefault(name, []).append((image_auroc(y, s), pixel_auroc(M, maps)))
    out = {k: dict(image_auroc=float(np.mean([a for a, _ in v])), pixel_auroc=float(np.mean([b for _, b in v])), rounds=v)
           for k, v in res.items()}
    if before is not None: out["fsad_nb before the fixes"] = {**_before(before, K, rounds, size), "code": str(before)}
    for k, v in out.items(): print(f"{k:58} image AUROC {100 * v['image_auroc']:.1f}  pixel AUROC {100 * v['pixel_auroc']:.1f}")
    return out

# ----------------------------------------------------------------------------------------------------------
# SimpleNet (Liu et al., CVPR 2023): DIR/SimpleNet. Its feature aggregation (common.py Preprocessing, MeanMapper,
# Aggregator) is DFD's, character for character, so the DFD row "aggregation to 1536" covers it.
# Key map: discriminator.body.block1.{0,1}, tail -> D_G.body.{0,1}, D_G.tail; pre_projection.layers.0fc -> adaptor.
# Grid 36 x 36: their MVTec run (run.sh) resizes to 329 and crops 288, stride 8.
# ----------------------------------------------------------------------------------------------------------
SN_GRID, SN_SIZE = 36, 288
SIMPLENET_STAGES = [
    Stage("discriminator (2 layers, hidden 1024), eval"), Stage("projection (pre_proj 1)"),
    Stage("patch scores -D"),
    Stage("segmentation: upsample + Gaussian sigma 4 (RescaleSegmentor)"),
    Stage("segmentation, >= 16 px from the border"),
    Stage("image score"),                                           # SimpleNetConfig.image_score = "patches"
]

def simplenet_keys(mods):
    D = mods["simplenet"].Discriminator(1536, n_layers=2, hidden=1024)
    P = mods["simplenet"].Projection(1536, 1536, 1, 0)
    return [(f"discriminator.{k}", s) for k, s in keys_shapes(D.state_dict())] + \
           [(f"pre_projection.{k}", s) for k, s in keys_shapes(P.state_dict())]

def simplenet_key(k:str) -> str:
    return k.replace("discriminator.body.block1.", "D_G.body.").replace("discriminator.tail.", "D_G.tail.") \
            .replace("pre_projection.layers.0fc.", "adaptor.")

def simplenet_tokens(): return seeded_tensor("simplenet.tokens", (SN_GRID * SN_GRID, 1536)) * math.sqrt(1536) * 0.5

def simplenet_theirs(root:Path, case:dict) -> dict:
    out = {}
    with authors_code(root, {**_stubs(("faiss",)), "torch.utils.tensorboard": _dfd_stubs()["torch.utils.tensorboard"]}):
        import importlib
        mods = {"simplenet": importlib.import_module("simplenet"), "common": importlib.import_module("common")}
        case["keys"] = simplenet_keys(mods)
        sd = seeded_state(case["keys"])
        D = mods["simplenet"].Discriminator(1536, n_layers=2, hidden=1024).eval()
        P = mods["simplenet"].Projection(1536, 1536, 1, 0).eval()
        D.load_state_dict({k[14:]: v for k, v in sd.items() if k.startswith("discriminator.")})
        P.load_state_dict({k[15:]: v for k, v in sd.items() if k.startswith("pre_projection.")})
        t = simplenet_tokens()
        with torch.no_grad():
            out["discriminator (2 layers, hidden 1024), eval"] = D(t)[:, 0]
            q = P(t); out["projection (pre_proj 1)"] = q
            s = -D(q); out["patch scores -D"] = s[:, 0]
            seg = mods["common"].RescaleSegmentor("cpu", (SN_SIZE, SN_SIZE))
            masks, _ = seg.convert_to_segmentation(s.view(1, SN_GRID, SN_GRID).numpy(), q.view(1, SN_GRID, SN_GRID, -1).numpy())
            out["segmentation: upsample + Gaussian sigma 4 (RescaleSegmentor)"] = torch.from_numpy(masks[0])
            out["segmentation, >= 16 px from the border"] = torch.from_numpy(masks[0])[16:-16, 16:-16]
            out["image score"] = s.max()                                 # their patch_maker.score on -D
    return out

def simplenet_ours_outputs(case:dict, fast:bool=False) -> dict:
    from fsad_nb.methods.dfd import build_nets, SimpleNetConfig, DFDScorer
    from fsad_nb.detector import smooth_maps, max_scores
    nets = build_nets(1536, (SN_GRID, SN_GRID), SimpleNetConfig(weights=None), seed=0).eval()
    nets.load_state_dict({simplenet_key(k): v for k, v in seeded_state(case["keys"]).items()})
    t, out = simplenet_tokens(), {}
    with torch.no_grad():
        out["discriminator (2 layers, hidden 1024), eval"] = nets.D_G(t[None])[0]
        out["projection (pre_proj 1)"] = nets.adaptor(t)
        g, _ = DFDScorer(None, nets, {}, SimpleNetConfig(weights=None)).branch_scores(t.view(1, 1, SN_GRID, SN_GRID, -1))
        out["patch scores -D"] = g[0]
        m = smooth_maps(g.view(1, SN_GRID, SN_GRID), SN_SIZE, 4.0)
        out["segmentation: upsample + Gaussian sigma 4 (RescaleSegmentor)"] = m[0]
        out["segmentation, >= 16 px from the border"] = m[0, 16:-16, 16:-16]
        unit = {"gau": torch.tensor([0., 1.])}                        # min-max range (0, 1): the raw scores -D
        scores, _ = DFDScorer(None, nets, unit, SimpleNetConfig(weights=None)).head(t.view(1, 1, SN_GRID, SN_GRID, -1), SN_SIZE)
        out["image score"] = scores[0]
    return out

SIMPLENET_META = ("keys",)

def simplenet_run(root:Path, write:bool=False, speed:bool=False):
    case = {}
    theirs = simplenet_theirs(root, case)
    ours = simplenet_ours_outputs(case)
    rows = [row("SimpleNet", st, ours[st.name], theirs[st.name]) for st in SIMPLENET_STAGES]
    if write: write_fixture("simplenet", {}, {k: case[k] for k in SIMPLENET_META}, theirs, ours, SIMPLENET_STAGES)
    return rows, None          # its training step and predict are DFD's with parts switched off: see DFD's timings

# ----------------------------------------------------------------------------------------------------------
# TDG (Sheynin et al., ICCV 2021): DIR/A-Hierarchical-Transformation-Discriminating-Generative-Model-for-...
# Only FewShot_models/models.py is imported: their transformation code needs kornia.augmentation.functional,
# which kornia removed (0.7), and their scoring is inline in defect_detection_evaluation.py, not a function
# (re-stated in our words below, `tdg_authors_vote`, and compared with TDGScorer on the same logits).
# Key map (one scale, nfc = min_nfc = 32, 5 layers, 3x3, no padding):
#   G: head.conv/norm -> body.0.0/body.0.1; body.block{i}.conv/norm -> body.{i}.0/.1; tail.0 -> tail.0
#   D (WDiscriminatorMulti, 54 transforms + fake): same for head/body; tail -> tail
# Their G is called as netG(cat(pad(z + prev), id), pad(prev)) (training.py: m_noise, m_image, pad_image_id).
# ----------------------------------------------------------------------------------------------------------
TDG_ROOT = "A-Hierarchical-Transformation-Discriminating-Generative-Model-for-Few-Shot-Anomaly-Detection"
TDG_FRACTION = 0.1                 # defect_detection_evaluation.py: --fraction_defect (main_train.py default 0.1)
# The patch-vote score on one scale: both sides read the same 54 transformed copies of the image (our transform_set,
# in our order; theirs is a random.shuffle of the same tuples saved as transformations.npy: a labelling, class j =
# j-th tuple) through the same seeded D (their layout: channel 54 = fake; ours: channel 0 = fake, so our tail is
# theirs rolled by one channel).
TDG_SCORE_STAGES = [
    Stage("patch votes, one scale (P of the right transformation, 54 x 54 x 54 patches)"),
    Stage("patch-vote score per transformation (mean of the lowest 10 % of patches)"),
    Stage("image score, one scale: -54 x ours (ours: minus the mean over transformations; theirs: the sum)"),
    Stage("image score, one scale (fraction 0.1)", differs="theirs sums the 54 transformations' lowest-10 % means (high = "
          "normal); ours is minus their mean (Eq. 12): an anomaly score, ours = -theirs / 54 exactly (row above), so "
          "every ranking and AUROC is the same")]
TDG_STAGES = [Stage("generator, one scale (64 px, image index 1)"), Stage("discriminator, one scale (55 logits per patch)"),
              *[Stage(f"{n} {c} transformations without a shift (flips, quarter turns, grey)", tol=1e-4,
                      why_tol="kornia turns by 90 degrees through bilinear sampling with a float rotation matrix")
                for n, c in ((54, "RGB"), (42, "grey"))],
              *[Stage(f"{n} {c} transformations with a shift", differs="their translation goes through kornia warp_affine: bilinear resampling with kornia 0.4's pixel "
                    "normalisation (a ~1/63 stretch at 64 px) and grid_sample reflection padding; ours moves by whole "
                    "pixels (int(0.15 s)) with reflect padding: the same shift up to resampling") for n, c in ((54, "RGB"), (42, "grey"))],
              Stage("their apply_augmentation without CUDA (bare except)", differs="theirs: .cuda() raises on a machine "
                    "without CUDA, their bare `except:` returns the image unchanged, so all transformations are the "
                    "identity and D's task is void; ours transforms (compare the row above)"),
              *TDG_SCORE_STAGES]
# Their augments_transform_color.py needs kornia.augmentation.functional (kornia <= 0.4): installed apart, e.g.
#   pip install --no-deps --target .venv/kornia04 kornia==0.4.1
KORNIA_OLD = ROOT/".venv"/"kornia04"

@contextlib.contextmanager
def old_kornia(path:Path):
    "kornia from `path` importable instead of the installed one, for the duration only."
    saved = {k: v for k, v in sys.modules.items() if k == "kornia" or k.startswith("kornia.")}
    for k in saved: del sys.modules[k]
    sys.path.insert(0, str(path))
    try: yield
    finally:
        sys.path.remove(str(path))
        for k in [k for k in sys.modules if k == "kornia" or k.startswith("kornia.")]: del sys.modules[k]
        sys.modules.update(saved)

def tdg_stage_name(n, colour, shifted):
    return f"{n} {'RGB' if colour else 'grey'} transformations " + ("with a shift" if shifted else "without a shift (flips, quarter turns, grey)")

def tdg_key(k:str) -> str:
    k = k.replace("head.conv.", "body.0.0.").replace("head.norm.", "body.0.1.")
    for i in (1, 2, 3): k = k.replace(f"body.block{i}.conv.", f"body.{i}.0.").replace(f"body.block{i}.norm.", f"body.{i}.1.")
    return k

def _tdg_opt(): return types.SimpleNamespace(nc_im=3, nfc=32, min_nfc=32, ker_size=3, padd_size=0, num_layer=5, num_transforms=54)

def tdg_case() -> dict:
    _, qry = magnetic_tile(1)
    x = as_input(qry[1:], 64) * 2 - 1                                    # their functions.norm: [-1, 1]
    return dict(image=x, paths=[str(qry[1])], prev=as_input(qry[:1], 64) * 2 - 1)

def tdg_theirs(root:Path, case:dict) -> dict:
    out, saved_cuda = {}, torch.Tensor.cuda
    with authors_code(root):
        import importlib
        M = importlib.import_module("FewShot_models.models")
        G, D = M.GeneratorConcatSkip2CleanAdd(_tdg_opt()).eval(), M.WDiscriminatorMulti(_tdg_opt()).eval()
        case["keys_G"], case["keys_D"] = keys_shapes(G.state_dict()), keys_shapes(D.state_dict())
        G.load_state_dict({k[2:]: v for k, v in seeded_state([("G." + k, s) for k, s in case["keys_G"]]).items()})
        D.load_state_dict({k[2:]: v for k, v in seeded_state([("D." + k, s) for k, s in case["keys_D"]]).items()})
        z, prev = 0.1 * seeded_tensor("tdg.z", (1, 3, 64, 64)), case["prev"]
        pad = nn.ZeroPad2d(5)
        with torch.no_grad():
            x_in = torch.cat([pad(z) + pad(prev), torch.full((1, 1, 74, 74), 1.0)], 1)
            out["generator, one scale (64 px, image index 1)"] = G(x_in, pad(prev))
            out["discriminator, one scale (55 logits per patch)"] = D(case["image"])
        from fsad_nb.methods.tdg import transform_set
        if not KORNIA_OLD.is_dir():
            print(f"TDG transformations skipped: {KORNIA_OLD} missing (pip install --no-deps --target {KORNIA_OLD} kornia==0.4.1)")
            return out
        with old_kornia(KORNIA_OLD), warnings_off():
            A = importlib.import_module("FewShot_models.augments_transform_color")
            x = case["image"]
            for n, colour in ((54, True), (42, False)):
                for shifted in (False, True):
                    ts = [t for t in transform_set(colour) if bool(t.tx or t.ty) == shifted]
                    out[tdg_stage_name(n, colour, shifted)] = torch.cat(
                        [A.apply_transform(x, t.flip, t.tx, t.ty, t.rot, int(t.grey)) for t in ts])
            tr = importlib.import_module("FewShot_models.training")
            cuda = torch.Tensor.cuda
            torch.Tensor.cuda = saved_cuda                          # as on a machine without CUDA: no shim
            try: out["their apply_augmentation without CUDA (bare except)"] = torch.cat(
                    [tr.apply_augmentation(x, t.flip, t.tx, t.ty, t.rot, int(t.grey)) for t in transform_set(True)])
            finally: torch.Tensor.cuda = cuda
        from fsad_nb.methods.tdg import transform_batch
        with torch.no_grad(): out.update(tdg_authors_vote_stages(D(transform_batch(x, transform_set(True))), TDG_FRACTION))
    return out

# NOT the authors' code: a re-statement, in our words, of what defect_detection() in their
# defect_detection_evaluation.py computes inline for one test image at one scale (script code, so it cannot be
# imported). For comparison only. L: their D's logits [M, M+1, h, w] of the image's M transformed copies, row j
# under the j-th tuple of their transformation list.
def tdg_authors_vote(L:torch.Tensor, fraction:float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    "(P of the right transformation per patch [M,h,w], per-transformation mean of the lowest int(h w fraction) [M], the image's score)."
    M = L.shape[0]
    rows = L.permute(0, 2, 3, 1).reshape(-1, L.shape[1])[:, :M]             # patch rows (transformation, y, x); fake channel M dropped
    P = rows.softmax(1).reshape(M, -1, M)                                     # softmax over the M transformations only
    right, low, score = [], [], 0
    for j in range(M):
        p = P[j][:, j]                                                        # copy j's patches, P(transformation j)
        n = int(p.shape[0] * fraction)                                        # rounded down, no lower bound (0 would give NaN)
        low.append(p.sort(dim=0).values[:n].mean())                           # the n lowest votes, averaged
        score = score + low[-1]                                               # summed over transformations
        right.append(p.view(L.shape[-2:]))
    return torch.stack(right), torch.stack(low), score                        # one image: their max over images and mean over one scale are the identity

def tdg_authors_vote_stages(L, fraction) -> dict:
    P, low, score = tdg_authors_vote(L, fraction)
    return {TDG_SCORE_STAGES[0].name: P, TDG_SCORE_STAGES[1].name: low, TDG_SCORE_STAGES[2].name: score.view(1),
            TDG_SCORE_STAGES[3].name: score.view(1)}

def tdg_rolled(sd:dict) -> dict:
    "Our D's state from theirs: the tail's output channels rolled by one (their fake class M -> our class 0, their T_j -> our j + 1)."
    return {k: torch.roll(v, 1, 0) if k.startswith("tail.") else v for k, v in sd.items()}

def tdg_ours_outputs(case:dict, fast:bool=False) -> dict:
    from fsad_nb.methods.tdg import Generator, Discriminator
    G, D = Generator(32, 3).eval(), Discriminator(32, 55, 3).eval()
    G.load_state_dict({tdg_key(k[2:]): v for k, v in seeded_state([("G." + k, s) for k, s in case["keys_G"]]).items()})
    D.load_state_dict({tdg_key(k[2:]): v for k, v in seeded_state([("D." + k, s) for k, s in case["keys_D"]]).items()})
    z = 0.1 * seeded_tensor("tdg.z", (1, 3, 64, 64))
    from fsad_nb.methods.tdg import transform_set, apply_transform
    x = case["image"]
    with torch.no_grad():
        out = {"generator, one scale (64 px, image index 1)": G(z, case["prev"], torch.tensor([1])),
               "discriminator, one scale (55 logits per patch)": D(case["image"])}
    for n, colour in ((54, True), (42, False)):
        for shifted in (False, True):
            ts = [t for t in transform_set(colour) if bool(t.tx or t.ty) == shifted]
            out[tdg_stage_name(n, colour, shifted)] = torch.cat([apply_transform(x, t) for t in ts])
    out["their apply_augmentation without CUDA (bare except)"] = torch.cat([apply_transform(x, t) for t in transform_set(True)])
    out.update(tdg_ours_vote_stages(D, x))
    return out

def tdg_ours_vote_stages(D, x) -> dict:
    "Our TDGScorer on one 64 px scale with score_fraction 0.1, D's tail rolled to our class order; x [1,3,64,64] in [-1, 1]."
    from fsad_nb.methods.tdg import TDGConfig, TDGScorer, transform_task, patch_score
    Dr = copy.deepcopy(D)
    Dr.load_state_dict(tdg_rolled(D.state_dict()))
    c = TDGConfig(image_size=64, single_scale=64, score_fraction=TDG_FRACTION, colour=True)
    sc = TDGScorer([Dr], transform_task(c, True), [64], c).eval()
    V = sc.votes(0, x)                                                         # [M,1,h,w]
    with torch.no_grad(): s = sc((x + 1) / 2)[0]                               # the whole head: [0,1] in, pyramid of one scale
    M = V.shape[0]
    return {TDG_SCORE_STAGES[0].name: V[:, 0], TDG_SCORE_STAGES[1].name: patch_score(V, TDG_FRACTION)[:, 0],
            TDG_SCORE_STAGES[2].name: -M * s, TDG_SCORE_STAGES[3].name: s}

def tdg_run(root:Path, write:bool=False, speed:bool=False):
    case = tdg_case()
    theirs = tdg_theirs(root, case)
    ours = tdg_ours_outputs(case)
    rows = [row("TDG", st, ours[st.name], theirs[st.name]) for st in TDG_STAGES if st.name in theirs]
    if write and len(rows) < len(TDG_STAGES): raise SystemExit("TDG fixture needs every stage: install the old kornia first")
    if write: write_fixture("tdg", {k: case[k] for k in ("image", "prev")}, {k: case[k] for k in ("keys_G", "keys_D", "paths")},
                            theirs, ours, TDG_STAGES)
    return rows, None

# ----------------------------------------------------------------------------------------------------------
# defaults: ours (the config dataclass, read live) beside what the authors' code runs with
# ----------------------------------------------------------------------------------------------------------
# (field, our default as listed, theirs, where theirs comes from, why it differs or "")
DEFAULTS = {
    "regad": ("fsad_nb.methods.regad:RegADConfig", [
        ("backbone", "efficientnet_lite0", "resnet18", "models/stn.py stn_net", "torchvision weights need a download; resnet18 selectable"),
        ("transform", "rotation_scale", "rotation_scale", "train.py --stn_mode", ""),
        ("epochs", 50, 50, "train.py --epochs", ""),
        ("batch_size", 32, 32, "train.py --batch_size", ""),
        ("lr", 1e-4, 1e-4, "train.py --lr (test.py's 0.01 is unused)", ""),
        ("momentum", 0.9, 0.9, "train.py --momentum", ""),
        ("train_size", 224, 224, "train.py --img_size", ""),
        ("eps", 0.01, 0.01, "test.py: cov + 0.01 * I", ""),
        ("sigma", 4.0, 4, "test.py: gaussian_filter(sigma=4)", ""),
        ("seed", 0, 668, "train.py --seed", "any seed"),
        ("iters_per_epoch", None, None, "one pass over the training set", ""),
        ("train_backbone", True, True, "STN.parameters() includes the backbone", "theirs also updates the backbone's BN statistics"),
    ], [
        ("schedule", "one cosine over all steps (per step)", "cosine per epoch: lr0 * (1 + cos(pi e / E)) / 2, e = 1..E",
         "train.py adjust_learning_rate", "smoother; theirs already decays in epoch 1 and trains epoch E at lr 0"),
        ("pairs", "pairs of single images (K = 1)", "each query with K = --shot (2) supports, their f3 averaged",
         "train.py train", "our reading of the paper's pairs; theirs is the 'improved version'"),
        ("input normalisation", "ImageNet mean/std", "none ([0,1] images into an ImageNet ResNet)",
         "datasets/mvtec.py (Normalize commented out)", "the weights expect normalised inputs"),
    ]),
    "uniad": ("fsad_nb.methods.uniad:UniADConfig", [
        ("backbone", "efficientnet_lite0", "efficientnet_b4", "config.yaml net.backbone", "offline weights; efficientnet_b4 selectable"),
        ("image_size", 224, 224, "config.yaml input_size", ""),
        ("hidden", 256, 256, "hidden_dim", ""), ("heads", 8, 8, "nhead", ""),
        ("enc_layers", 4, 4, "num_encoder_layers", ""), ("dec_layers", 4, 4, "num_decoder_layers", ""),
        ("ff", 1024, 1024, "dim_feedforward", ""), ("dropout", 0.1, 0.1, "dropout", ""),
        ("neighbour", 7, 7, "neighbor_mask.neighbor_size [7,7], mask [True]*3", ""),
        ("jitter_scale", 20.0, 20.0, "feature_jitter.scale", ""),
        ("jitter_p", 1.0, 1.0, "feature_jitter.prob (theirs: per batch, ours per image: same at 1.0)", ""),
        ("epochs", 1000, 1000, "trainer.max_epoch", ""), ("batch_size", 8, 8, "dataset.batch_size (per GPU)", ""),
        ("lr", 1e-4, 1e-4, "optimizer AdamW lr", ""), ("weight_decay", 1e-4, 1e-4, "optimizer weight_decay", ""),
        ("clip", 0.1, 0.1, "trainer.clip_max_norm", ""), ("lr_step", 800, 800, "StepLR step_size", ""),
        ("lr_gamma", 0.1, 0.1, "StepLR gamma", ""), ("sigma", 0.0, 0.0, "no smoothing in their eval", ""),
        ("pool", 16, 16, "evaluator max avgpool_size [16,16]", ""), ("seed", 0, 133, "random_seed", "any seed"),
    ], [
        ("initialisation", "xavier on encoder/decoder matrices (incl. the learned queries); PyTorch defaults for "
         "proj_in/proj_out and all biases", "xavier_uniform on every Linear (incl. input/output_proj, attention "
         "out_proj), zero biases; learned queries N(0,1); attention in_proj xavier, zero bias",
         "models/initializer.py, nn.MultiheadAttention", "not measured: changes only the starting point"),
        ("neck / map resizing", "bilinear, align_corners=True (as_tokens, UniADScorer.align_corners)",
         "nn.UpsamplingBilinear2d (align_corners=True)", "models/necks/mfcn.py, models/reconstructions/uniad.py",
         "same: the stages 'neck' and 'map upsampled x16' agree"),
    ]),
    "dfd": ("fsad_nb.methods.dfd:DFDConfig", [
        ("backbone", "efficientnet_lite0", "wideresnet50", "main.py --backbone_name", "offline weights; wide_resnet50_2 selectable"),
        ("layers", (1, 2), (1, 2), "main.py -le layer2 layer3", ""),
        ("patch_size", 3, 3, "main.py --patchsize", ""), ("n_augment", 80, 80, "main.py --num", ""),
        ("dim", None, 1536, "main.py --pretrain/target_embed_dimension", "1536 in the paper preset; None on lite0 (152 channels)"),
        ("rotation", 90.0, 90.0, "data_loader.py: rotate +-90", ""),
        ("p_normal", 0.3, 0.2, "data_loader.py MVTecTrainDataset (VisA: 0.3)", "the paper's 70 % pseudo-anomalies"),
        ("hidden", 1024, 1024, "main.py --dsc_hidden", ""), ("vit_heads", 16, 16, "Discriminator_perlin num_heads", ""),
        ("noise_std", None, 0.015, "model.load noise_std", "None = 0.015 for wide_resnet50_2, scaled to the features otherwise"),
        ("margin", 0.5, 0.5, "cal_loss_* (0.5)", ""),
        ("lambda_per", 2.0, 1.0, "train_module: loss = gaussian + perlin + sim", "the paper's MVTec value (Sec. 4.1)"),
        ("lambda_sim", 0.02, 1.0, "train_module: loss = gaussian + perlin + sim", "the paper's MVTec value (Sec. 4.1)"),
        ("epochs", 80, 80, "main.py --meta_epochs 20 x --epochs 4", ""), ("batch_size", 8, 8, "main.py --batch_size", ""),
        ("lr_adaptor", 5e-4, 5e-4, "main.py --lr_proj", ""), ("lr_gaussian", 2e-4, 2e-4, "main.py --lr_gaussian", ""),
        ("lr_perlin", 1e-4, 1e-4, "main.py --lr_perlin", ""), ("weight_decay", 1e-5, 1e-5, "model.load Adam groups", ""),
        ("lr_min", 4e-5, 4e-5, "CosineAnnealingLR eta_min = lr_perlin * 0.4", ""),
        ("sigma", 4.0, 4, "cal_map gaussian_filter(sigma=4)", ""), ("seed", 0, 0, "main.py --seed", "ours: plus one draw per fit from the generator the protocol seeds each round"),
        ("normalise", "train", "test", "predict(): min-max over the test set", "deliberate: no test-set statistics"),
    ], [
        ("schedule", "cosine over the 80 epochs", "cosine T_max = (meta_epochs - 1) x epochs = 76, per epoch",
         "model.load dsc_schl", "theirs reaches eta_min 4 epochs early"),
        ("checkpoint", "the last", "the best of 20 on the TEST set (I-AUROC + P-AUROC + AUPRO)", "model.train",
         "deliberate: no choice on the test set"),
        ("colour order", "RGB", "BGR (cv2.imread) normalised with RGB ImageNet statistics", "data_loader.py",
         "their bug; no effect on grey images such as magnetic_tile"),
        ("image size", "the protocol's (224 by default)", "256 (cv2.resize, no antialiasing)", "main.py --imagesize", ""),
    ]),
    "simplenet": ("fsad_nb.methods.dfd:SimpleNetConfig", [
        ("backbone", "efficientnet_lite0", "wideresnet50", "run.sh -b", "offline weights; wide_resnet50_2 selectable"),
        ("layers", (1, 2), (1, 2), "run.sh -le layer2 -le layer3", ""), ("patch_size", 3, 3, "run.sh --patchsize", ""),
        ("dim", None, 1536, "run.sh --pretrain/target_embed_dimension", "1536 in the paper preset; None on lite0 (152 channels)"),
        ("image_score", "patches", "patches", "simplenet.py _predict: max of the token scores -D", ""),
        ("hidden", 1024, 1024, "run.sh --dsc_hidden (--dsc_layers 2)", ""), ("margin", 0.5, 0.5, "run.sh --dsc_margin", ""),
        ("noise_std", None, 0.015, "run.sh --noise_std", "None = 0.015 for wide_resnet50_2, scaled otherwise"),
        ("epochs", 160, 160, "run.sh --meta_epochs 40 x --gan_epochs 4", ""), ("batch_size", 8, 8, "run.sh --batch_size", ""),
        ("lr_gaussian", 2e-4, 2e-4, "main.py --dsc_lr", ""), ("weight_decay", 1e-5, 1e-5, "dsc_opt", ""),
        ("lr_adaptor", 5e-4, 1e-4, "simplenet.py: AdamW(pre_projection, lr * 0.1), lr = 1e-3", "DFD's value (Adam)"),
        ("lr_min", 4e-5, 8e-5, "CosineAnnealingLR eta_min = dsc_lr * 0.4", "DFD's value"),
        ("n_augment", 1, 1, "no augmentation (run.sh)", ""), ("sigma", 4.0, 4, "RescaleSegmentor smoothing", ""),
    ], [
        ("image size", "the protocol's (224 by default)", "resize 329, centre crop 288", "run.sh --resize/--imagesize", ""),
        ("checkpoint", "the last", "the best on the TEST set", "simplenet.py train", "deliberate"),
    ]),
    "tdg": ("fsad_nb.methods.tdg:TDGConfig", [
        ("image_size", 128, 128, "main_train.py --size_image", ""),
        ("max_size", 64, 64, "config_few_shot.py --max_size", ""), ("min_size", 25, 25, "config_few_shot.py --min_size", ""),
        ("scale_factor", 0.75, 0.75, "config_few_shot.py --scale_factor", ""),
        ("nfc", 32, 32, "config_few_shot.py --nfc / --min_nfc (doubled every 4 scales, at most --size_image)", ""),
        ("translation", 0.15, 0.15, "augments_transform_color.py translation(): ratio", ""),
        ("iterations", None, None, "main_train.py --niter_rgb 1000 / --niter_gray 500 (None: that rule)", ""),
        ("d_steps", 3, 3, "config_few_shot.py --Dsteps", ""), ("g_steps", 3, 3, "config_few_shot.py --Gsteps", ""),
        ("lr", 5e-4, 5e-4, "config_few_shot.py --lr_g, --lr_d", ""), ("beta1", 0.5, 0.5, "config_few_shot.py --beta1", ""),
        ("lr_gamma", 0.1, 0.1, "config_few_shot.py --gamma", ""),
        ("lr_drop_d", 500, 500, "training.py MultiStepLR(optimizerD, milestones=[500])", ""),
        ("lr_drop_g", 1000, 1000, "training.py MultiStepLR(optimizerG, milestones=[1000])", ""),
        ("alpha", 100.0, 100, "config_few_shot.py --alpha", ""), ("noise_amp", 0.1, 0.1, "config_few_shot.py --noise_amp", ""),
        ("reuse_weights", True, True, "training.py: previous scale's netG/netD loaded when nfc is unchanged", ""),
        ("score_fraction", 0.05, 0.1, "main_train.py --fraction_defect (defect_detection_evaluation.py)",
         "Sec. 3.3 / Fig. 7: 5 % is best at K = 1 (10 % at K = 5, 10); score_fraction=0.1 gives theirs"),
        ("sigma", 0.0, 0.0, "no smoothing in their evaluation", ""),
        ("seed", 0, None, "config_few_shot.py --manualSeed (None: random.randint(1, 10000))", "any seed"),
    ], [
        ("score over transformations", "minus the mean (Eq. 12)", "the sum (high = normal)", "defect_detection_evaluation.py",
         "ours = -theirs / M: same ranking (stage 'image score')"),
        ("patches kept", "max(1, int(fraction n))", "int(fraction n): NaN when a scale has fewer than 10 patches",
         "defect_detection_evaluation.py", "only scales under 14 px, not reached by the defaults"),
        ("per-scale normalisation", "none", "a second AUROC with each scale's scores min-max normalised over the test set",
         "defect_detection_evaluation.py compute_normalized_dict", "deliberate: no test-set statistics (their first AUROC is unnormalised)"),
        ("transformation order", "fixed, identity first", "random.shuffle of the same tuples, saved per run",
         "Dataloaders/*_loader.py transformations.npy", "a labelling of D's classes"),
        ("one-class score", "score_fraction=None (all patches, Eq. 12)", "mean of all patches",
         "anomaly_detection_evaluation.py", "the same when asked for; the one-class helpers pass None"),
    ]),
}

def defaults_rows(method:str) -> list[dict]:
    "Our live config default beside the listed one and theirs, per field."
    import importlib
    path, fields, _ = DEFAULTS[method]
    mod, cls = path.split(":")
    cfg = getattr(importlib.import_module(mod), cls)()
    return [dict(field=f, ours=getattr(cfg, f), listed_ours=lo, theirs=t, source=src, why=why,
                 same=getattr(cfg, f) == t) for f, lo, t, src, why in fields]

def print_defaults(methods):
    for m in methods:
        if m not in DEFAULTS: continue
        print(f"\n{m}: defaults, ours vs the authors' code")
        for r in defaults_rows(m):
            print(f"  {r['field']:16} {str(r['ours']):20} {str(r['theirs']):20} {'same' if r['same'] else 'DIFFERS: ' + r['why']}")
        for name, ours, theirs, src, why in DEFAULTS[m][2]:
            print(f"  {name:16} ours: {ours}; theirs: {theirs} ({src}). {why}")

# ----------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------
# Large intermediate inputs (feature maps, embeddings) are stored in float16 when they are only *inputs* to a
# stage; the bench then recomputes nothing from them, so the test feeds the float16-rounded copy to our code
# and compares with the authors' outputs on exactly those inputs only where the fixture says `exact_inputs`.
def write_fixture(name, inputs:dict, meta:dict, theirs:dict, ours:dict, stages):
    "inputs (float16 when exact, else float32) + a fixed sample of the authors' output of every stage + the rows."
    FIXTURES.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k, v in inputs.items():
        v = v.detach().cpu()
        arrays[f"in/{k}"] = v.numpy().astype(np.float16 if torch.equal(v.half().float(), v.float()) else np.float32)
    rows = {}
    for st in stages:
        t, o = theirs[st.name], ours[st.name]
        arrays[f"theirs/{st.name}"] = sampled(t)
        a, r = difference(sampled(o), sampled(t))
        fa, fr = difference(o, t)
        rows[st.name] = dict(shape=list(np.shape(_np(t))), sampled_abs=a, sampled_rel=r, max_abs=fa, max_rel=fr,
                             tol=st.tol, differs=st.differs)
    np.savez_compressed(FIXTURES/f"{name}.npz", **arrays)
    (FIXTURES/f"{name}.json").write_text(json.dumps(dict(meta=meta, stages=rows, n_sample=N_SAMPLE), indent=1))

def read_fixture(name):
    "(case tensors as float32 torch, meta, sampled authors' outputs, recorded rows) of a fixture."
    z = np.load(FIXTURES/f"{name}.npz")
    j = json.loads((FIXTURES/f"{name}.json").read_text())
    case = {k[3:]: torch.from_numpy(z[k].astype(np.float32)) for k in z.files if k.startswith("in/")}
    theirs = {k[7:]: z[k] for k in z.files if k.startswith("theirs/")}
    return {**case, **j["meta"]}, theirs, j["stages"]

OURS = {"regad": lambda c, f: regad_ours_outputs(c, f), "uniad": lambda c, f: uniad_ours_outputs(c, f),
        "dfd": lambda c, f: dfd_ours_from_fixture(c, f), "simplenet": lambda c, f: simplenet_ours_outputs(c, f),
        "tdg": lambda c, f: tdg_ours_outputs(c, f)}

def agreement(name:str, fast:bool=True) -> list[dict]:
    "Recompute our side of every stage from the fixture alone and compare with the stored authors' outputs: "
    "rows (stage, max rel now on the fixture's sample, tolerance, status, the recorded full-size max rel). "
    "`fast` skips the end-to-end stages (they need a full fit and predict)."
    case, theirs, stages = read_fixture(name)
    torch.manual_seed(0)
    ours, rows = OURS[name](case, fast), []
    for stage, rec in stages.items():
        if stage not in ours: continue
        a, r = difference(sampled(ours[stage]), theirs[stage])
        ok = r <= rec["tol"] if rec["differs"] is None else math.isclose(a, rec["sampled_abs"], rel_tol=1e-2, abs_tol=1e-6)
        rows.append(dict(stage=stage, max_rel=r, tol=rec["tol"], full_max_rel=rec["max_rel"],
                         status=("agrees" if rec["differs"] is None else "differs as documented") if ok else "CHANGED"))
    return rows

def print_agreement(rows):
    w = max(len(r["stage"]) for r in rows)
    print(f"{'stage':{w}}  {'now':>8}  {'recorded':>8}  {'tol':>6}  status     (max relative difference: now on the stored sample, recorded on full tensors)")
    for r in rows: print(f"{r['stage']:{w}}  {r['max_rel']:8.2g}  {r['full_max_rel']:8.2g}  {r['tol']:6.0e}  {r['status']}")

# ----------------------------------------------------------------------------------------------------------
METHODS = {"regad": (regad_run, "RegAD"), "uniad": (uniad_run, "UniAD"), "dfd": (dfd_run, "DFD"),
           "simplenet": (simplenet_run, "SimpleNet"), "tdg": (tdg_run, TDG_ROOT)}
SPEED = {"regad": lambda r, c: regad_speed(r, c), "uniad": lambda r, c: uniad_speed(r, c), "dfd": lambda r, c: dfd_speed(r, c)}

def print_rows(rows):
    w = max(len(r["stage"]) for r in rows)
    print(f"{'method':8} {'stage':{w}} {'max abs':>10} {'max rel':>10} {'tol':>7}  status")
    for r in rows:
        print(f"{r['method']:8} {r['stage']:{w}} {r['max_abs']:10.3g} {r['max_rel']:10.3g} {r['tol']:7.0e}  {r['status']}"
              + (f"  ({r['note'][:90]})" if r["status"] == "differs" else ""))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", required=True, type=Path, help="folder holding the authors' clones (RegAD, UniAD, ...)")
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--write-fixtures", action="store_true", help="(re)write tests/fixtures/official/")
    p.add_argument("--speed", action="store_true", help="also time one training step and one predict, ours vs theirs")
    p.add_argument("--speed-only", action="store_true", help="only the timings (the case comes from the fixtures)")
    p.add_argument("--json", type=Path, help="where the results go (default: bench/results/equivalence.json, "
                   "equivalence_speed.json with --speed-only)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--effects", action="store_true", help="measure RegAD's differences on magnetic_tile (no authors' code)")
    p.add_argument("--before", type=Path, help="with --effects: also measure fsad_nb at this checkout (e.g. a worktree of older code)")
    p.add_argument("--code", type=Path, help="import fsad_nb from this checkout instead (--effects: fsad_nb's own numbers only)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    a.json = a.json or ROOT/"bench"/"results"/("equivalence_speed.json" if a.speed_only else "equivalence.json")
    if a.code: sys.path.insert(0, str(a.code.resolve()))
    allrows, speeds = [], {}
    if a.effects:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        eff = regad_effects(only_ours=a.code is not None, before=a.before)
        a.json.write_text(json.dumps(dict(regad=eff, threads=a.threads), indent=1)); return 0
    def write():  # after every method, so that a later failure keeps what was measured
        from fsad_nb.core import save_json
        defaults = {m: dict(fields=defaults_rows(m), other=[dict(zip(("name", "ours", "theirs", "source", "why"), o))
                                                             for o in DEFAULTS[m][2]]) for m in a.methods if m in DEFAULTS}
        save_json(a.json, json.loads(json.dumps(dict(rows=allrows, speed=speeds, defaults=defaults, threads=a.threads,
                                                     torch=torch.__version__), default=str)))
    for m in a.methods:
        run, folder = METHODS[m]
        root = a.official/folder
        if not root.is_dir(): raise SystemExit(f"{root}: no such folder (clone the authors' repository there)")
        if a.speed_only:
            case = read_fixture(m)[0]
            if m == "dfd": case = dfd_seeded(case)
            speeds[m] = SPEED[m](root, case)
        else:
            rows, sp = run(root, a.write_fixtures, a.speed)
            allrows += rows
            if sp: speeds[m] = sp
        write()
    if allrows: print_rows(allrows)
    print_defaults(a.methods)
    for m, s in speeds.items(): print(m, json.dumps({k: round(v, 4) for k, v in s.items()}))
    bad = [r for r in allrows if r["status"] == "FAIL"]
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
