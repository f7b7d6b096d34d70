#!/usr/bin/env python
"Render nbs/index.ipynb as README.md without Quarto: markdown cells as they are, code cells fenced, text outputs below them."
import argparse, os, tempfile
from pathlib import Path
import nbformat

def render(nb_path:Path)->str:
    nb = nbformat.read(str(nb_path), as_version=4)
    out = []
    for c in nb.cells:
        src = c.source.strip()
        if not src or src.startswith('#| hide') or src.startswith('#|hide'): continue
        if c.cell_type == 'markdown': out.append(src)
        elif c.cell_type == 'code':
            out.append('```python\n' + '\n'.join(l for l in src.splitlines() if not l.startswith('#|')) + '\n```')
            text = ''.join(o.get('text', '') for o in c.get('outputs', []) if o.get('output_type') == 'stream' and o.get('name') == 'stdout')
            if text.strip(): out.append('```\n' + text.rstrip() + '\n```')
    return '\n\n'.join(out) + '\n\n<!-- generated from nbs/index.ipynb by scripts/make_readme.py: edit the notebook, not this file -->\n'

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--nb', default='nbs/index.ipynb'); p.add_argument('--out', default='README.md')
    a = p.parse_args()
    root = Path(__file__).resolve().parent.parent
    text = render(root/a.nb)
    dest = root/a.out
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix='.README.', suffix='.tmp')
    with os.fdopen(fd, 'w', encoding='utf-8') as f: f.write(text)
    os.chmod(tmp, 0o644); os.replace(tmp, dest)
