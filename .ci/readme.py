"""Write README.md from nbs/index.ipynb (what `nbdev-readme` does where Quarto is installed): markdown cells as they are,
`#| echo: false` code cells as their outputs only, image links made relative to the repository root.

    python .ci/readme.py           # write README.md
    python .ci/readme.py --check   # exit 1 if README.md differs from what index.ipynb gives
"""
import sys, re, json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(nb_path=ROOT/"nbs"/"index.ipynb") -> str:
    nb, parts = json.loads(Path(nb_path).read_text()), []
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown": parts.append(src)
        elif c["cell_type"] == "code":
            if not src.startswith("#| echo: false"): parts.append("```python\n" + src + "\n```")
            for o in c.get("outputs", []):
                d = o.get("data", {})
                if "text/markdown" in d: parts.append("".join(d["text/markdown"]).strip())
                elif o.get("output_type") == "stream": parts.append("```\n" + "".join(o["text"]).rstrip() + "\n```")
    text = "\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"
    return re.sub(r"\]\(images/", "](nbs/images/", text)

if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv: sys.exit(0 if (ROOT/"README.md").read_text() == text else 1)
    (ROOT/"README.md").write_text(text)
