"""The package's shape: no two modules of `fsad_nb` import each other, and methods are discovered (built in or by entry point)."""
import ast, importlib.metadata, subprocess, sys
from pathlib import Path
import fsad_nb
from fsad_nb import registry

PKG = Path(fsad_nb.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    "Every fsad_nb module `path` imports, at module level or inside functions (relative imports resolved)."
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import): names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                base = ".".join(up + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in n.names]        # `from fsad_nb import data` imports fsad_nb.data
        else: continue
        out |= {m for m in names if m.startswith("fsad_nb")}
    return out


def _graph() -> dict[str, set[str]]:
    files = [p for p in PKG.rglob("*.py") if p.name != "_modidx.py"]
    mods = {_module_name(p): p for p in files}
    return {m: {i for i in _imports(p) if i in mods and i != m and i != "fsad_nb"} for m, p in mods.items()}


def test_no_two_modules_import_each_other():
    g = _graph()
    assert "fsad_nb.detector" in g and "fsad_nb.data" in g["fsad_nb.detector"]         # the graph sees real imports
    pairs = sorted({tuple(sorted((a, b))) for a, deps in g.items() for b in deps if a in g.get(b, ())})
    assert pairs == [], f"modules importing each other: {pairs}"


def test_import_graph_has_no_cycle():
    "Longer loops count too: the modules can be ordered so that each imports only modules before it."
    import graphlib
    graphlib.TopologicalSorter(_graph()).prepare()                 # raises CycleError naming the loop


def test_library_never_imports_testing_helpers():
    g = _graph()
    assert [m for m, deps in g.items() if "fsad_nb.testing" in deps] == []


def test_builtin_methods_are_found_in_the_package():
    names = set(registry.method_index())
    assert {"knn", "regad", "dfd", "simplenet", "tdg", "uniad"} <= names and "adversarial" not in names


def test_entry_point_method_is_listed(monkeypatch, tmp_path):
    (tmp_path/"ep_tiny.py").write_text('from fsad_nb.detector import Detector\n\n'
                                       'class EpTiny(Detector):\n    "Tiny detector declared by an entry point."\n    name = "ep_tiny"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint("ep_tiny", "ep_tiny:EpTiny", registry.GROUP)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: importlib.metadata.EntryPoints([ep]) if kw.get("group") == registry.GROUP else real(**kw))
    from fsad_nb.detector import available_methods, method_class, REGISTRY
    from fsad_nb.cli import catalog
    assert "ep_tiny" in available_methods()
    assert catalog()[0]["ep_tiny"] == "Tiny detector declared by an entry point."
    try: assert method_class("ep_tiny").__name__ == "EpTiny"
    finally: REGISTRY.pop("ep_tiny", None); sys.modules.pop("ep_tiny", None)


def test_fsad_list_with_an_installed_plugin_is_fast_and_torch_free(tmp_path):
    "A real (tiny) installed package: a module and a .dist-info whose entry_points.txt names it."
    (tmp_path/"tinyplug").mkdir()
    (tmp_path/"tinyplug"/"__init__.py").write_text('class TinyDetector:\n    "A tiny plug-in detector."\n    name = "tiny"\n')
    info = tmp_path/"tinyplug-0.1.dist-info"; info.mkdir()
    (info/"METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    (info/"entry_points.txt").write_text(f"[{registry.GROUP}]\ntiny = tinyplug:TinyDetector\n")
    code = ("import sys, time; t = time.time(); from fsad_nb.cli import main; main(['list']); "
            "print(time.time() - t, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "A tiny plug-in detector." in r.stdout
    seconds, torch_loaded = r.stdout.split()[-2:]
    assert float(seconds) < 1 and torch_loaded == "False"


def test_downloads_need_no_torch():
    "Fetching a dataset is HTTP, checksums and archives: importing `downloads` loads neither torch nor the image code."
    r = subprocess.run([sys.executable, "-c", "import sys, fsad_nb.downloads; print('torch' in sys.modules, 'fsad_nb.data' in sys.modules)"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False"], r.stdout
