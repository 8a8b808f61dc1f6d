"""Clean the stored outputs of notebooks the way a reader should see them, keeping every real result:

- a stream that redraws a progress bar (fastprogress/tqdm frames joined by carriage returns) keeps only the lines
  a terminal would finally show, without the bars;
- fastprogress's HTML bars (`<progress>` display data) are dropped;
- an `Out:` that is only an object's repr (`<torch._C.Generator>`, `<... object at 0x...>`) is dropped.

    python .ci/clean_outputs.py nbs/11_regad.ipynb ...     # rewrite the notebooks in place (cell ids kept)
    python .ci/clean_outputs.py --check nbs/*.ipynb        # exit 1 and name the cells if any would change

Execution counts are not numbered here: `nbdev-clean` resets them, and the docs (Quarto) show no prompts.
tests/test_pages.py checks the same rules (`BAR`, `REPR`).
"""
import json, re, sys
from pathlib import Path

BAR = re.compile(r"\|[█\-]{10,}\||\d+\.\d+% \[\d+/\d+ [\d:]+<|<progress\b|fastprogress|\d+%\|[█▏▎▍▌▋▊▉ ]*\|")  # fastprogress, tqdm
REPR = re.compile(r"^<[\w.]+(?: object)?(?: at 0x[0-9a-fA-F]+)?>$")


def _terminal_lines(text:str) -> str:
    "What a terminal shows of `text`: each line's last carriage-return segment, bar frames and blank redraws dropped."
    out = []
    for line in text.split("\n"):
        seen = [s for s in line.split("\r") if s.strip()]
        last = seen[-1] if seen else ""
        cleared = len(seen) > 1 and re.search(r" {10,}$", last)       # a bar's label redrawn blank at its end
        if not BAR.search(last) and not cleared and (last.strip() or not seen): out.append(last.rstrip())
    return "\n".join(out)


def clean_output(o:dict):
    "The cleaned output `o`, or None to drop it."
    if o.get("output_type") == "stream":
        text = "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
        if BAR.search(text):
            text = _terminal_lines(text)
            if not text.strip(): return None
            o["text"] = text.lstrip("\n") if text.endswith("\n") else text.lstrip("\n") + "\n"
        return o
    d = o.get("data", {})
    html = "".join(d.get("text/html", "x"))
    if BAR.search(html) or not html.strip(): return None                  # a bar, or the empty HTML a finished bar leaves
    if o.get("output_type") == "execute_result" and set(d) <= {"text/plain"} and REPR.match("".join(d.get("text/plain", "")).strip()):
        return None
    return o


def clean_nb(path) -> list[int]:
    "Clean the notebook at `path` in place; the indices of the cells that changed."
    path = Path(path); nb, changed = json.loads(path.read_text()), []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code" or not c.get("outputs"): continue
        before = json.dumps(c["outputs"])
        c["outputs"] = [o for o in (clean_output(json.loads(json.dumps(o))) for o in c["outputs"]) if o is not None]
        if json.dumps(c["outputs"]) != before: changed.append(i)
    if changed and "--check" not in sys.argv:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


if __name__ == "__main__":
    bad = {p: ch for p in (a for a in sys.argv[1:] if a != "--check") if (ch := clean_nb(p))}
    for p, ch in bad.items(): print(f"{p}: cells {ch} {'would change' if '--check' in sys.argv else 'cleaned'}")
    sys.exit(1 if bad and "--check" in sys.argv else 0)
