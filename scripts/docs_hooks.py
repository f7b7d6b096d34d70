"""mkdocs hooks for the docs site (`scripts/docs.py` names this file in the generated mkdocs.yml).

- Heading ids: mkdocs-jupyter gives headings nbconvert's ids (not unique: a page titled `Evaluate` with an
  `evaluate` function has three `#evaluate`) but builds the page TOC with Python-Markdown's (deduplicated), so TOC
  links can miss. Here the ids are made unique, show_doc entries (`h.sd-name`, whose ids are nbdev's anchors) keeping
  theirs, and the TOC is rebuilt from the headings as rendered.
- mkdocs-jupyter inlines the same ~0.6 MB of JupyterLab CSS in every page: pages link one shared copy instead."""
import hashlib, html, os, re
from pathlib import Path

from mkdocs.structure.toc import get_toc

TOC_DEPTH = 3
_re_h = re.compile(r'<h([1-6])((?:\s+[\w-]+="[^"]*")*)\s*>(.*?)</h\1>', flags=re.DOTALL)
_re_id = re.compile(r'\sid="([^"]*)"')

def _text(inner:str)->str:
    inner = re.sub(r'<a class="anchor-link"[^>]*>.*?</a>', '', inner, flags=re.DOTALL)
    return html.unescape(re.sub(r'<[^>]+>', '', inner)).strip()

def _nest(flat):
    "TOC tokens nested by heading level"
    root, stack = [], []
    for t in flat:
        while stack and stack[-1]['level'] >= t['level']: stack.pop()
        (stack[-1]['children'] if stack else root).append(t)
        stack.append(t)
    return root

def on_page_content(content, page, config, files):
    if not page.file.src_path.endswith('.ipynb'): return content
    heads = list(_re_h.finditer(content))
    taken = {m.group(1) for h in heads if 'sd-name' in h.group(2) for m in [_re_id.search(h.group(2))] if m}
    taken |= set(re.findall(r'<a id="([^"]+)"></a>', content))
    out, pos, flat = [], 0, []
    for h in heads:
        level, attrs, inner = int(h.group(1)), h.group(2), h.group(3)
        m = _re_id.search(attrs)
        old = m.group(1) if m else ''
        if 'sd-name' in attrs: new = old
        else:
            base = old or 'section'
            new, i = base, 0
            while new in taken: i += 1; new = f'{base}_{i}'
            taken.add(new)
            attrs = _re_id.sub(f' id="{new}"', attrs) if m else f'{attrs} id="{new}"'
            inner = inner.replace(f'href="#{old}"', f'href="#{new}"') if old else inner
        out += [content[pos:h.start()], f'<h{level}{attrs}>{inner}</h{level}>']
        pos = h.end()
        if new and level <= TOC_DEPTH: flat.append({'level': level, 'id': new, 'name': html.escape(_text(inner)), 'children': []})
    out.append(content[pos:])
    page.toc = get_toc(_nest(flat))
    return ''.join(out)

_re_style = re.compile(r'<style type="text/css">(.*?)</style>', flags=re.DOTALL)

def on_post_page(output, page, config):
    dest = Path(page.file.abs_dest_path)
    def link(m):
        css = m.group(1)
        if len(css) < 50_000: return m.group(0)
        f = Path(config['site_dir'])/'assets'/'stylesheets'/f'jupyter-{hashlib.sha256(css.encode()).hexdigest()[:12]}.css'
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(css, encoding='utf-8')
        return f'<link rel="stylesheet" href="{os.path.relpath(f, dest.parent)}">'
    return _re_style.sub(link, output)
