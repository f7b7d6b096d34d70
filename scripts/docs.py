#!/usr/bin/env python
"""Build the documentation site `_docs/` from nbs/*.ipynb without Quarto.

1. nbdev's own notebook processor (`nbdev.serve.proc_nbs`, the engine of `nbdev_proc_nbs`) writes `_proc/`: a
   `show_doc` entry after every exported name, `#| hide` / `#| export` cells dropped, frontmatter from the
   `# Title` / `> subtitle` cell, backticked names linked. It runs only what `show_doc` needs (see `runs_for_docs`).
2. `_proc/*.ipynb` become mkdocs-jupyter pages in `_proc/site/` (Quarto's `#|` options applied, `show_doc` output
   turned into page markdown with nbdev's anchors, links to the published site made relative).
3. `_proc/mkdocs.yml` is written from settings.ini and the notebooks that exist (sorted by name, titled by their
   first `# Title` heading), and mkdocs-material builds `_docs/`.

`scripts/docs.sh` runs this. A notebook whose `show_doc` cells fail (say its exported imports break) still gets a page,
without its API entries and with the error on it; the build then exits 1 unless `--keep-going`.

Why mkdocs-material + mkdocs-jupyter (over Sphinx + myst-nb, or jupyter-book): notebooks render as notebooks (outputs,
tables, plots as in Jupyter); nbdev's links (`split.html#leave_one_out`) stay plain links, where Sphinx resolves them
as cross-references and renames anchors; full-text search with suggestions, working from `file://` too (offline
plugin); fewer, lighter dependencies (no Sphinx/docutils stack). Builds in well under a minute on 2 cores."""
import argparse, ast, configparser, html, json, os, re, shutil, subprocess, sys, time, warnings
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------------------
# 1. nbdev processing, executing only what show_doc needs

_RUN_DIRECTIVES = {'export', 'exports', 'exporti', 'exec_doc'}

def _is_import(t): return isinstance(t, (ast.Import, ast.ImportFrom))
def _is_show_doc(t):
    return isinstance(t, ast.Expr) and isinstance(t.value, ast.Call) and getattr(t.value.func, 'id', None) == 'show_doc'

def _is_nbdev_export(t):
    f = getattr(t, 'value', None) if isinstance(t, ast.Expr) else None
    return isinstance(f, ast.Call) and getattr(f.func, 'id', getattr(f.func, 'attr', None)) == 'nbdev_export'

def runs_for_docs(cell)->bool:
    "Does the docs build execute `cell`? Exported cells, cells of only imports, and cells of only `show_doc` calls"
    if cell.cell_type != 'code' or not cell.source: return False
    if cell.get('metadata', {}).get('language', 'python') != 'python': return False
    if cell.directives_.get('eval:', [''])[0].lower() == 'false': return False
    try: trees = ast.parse(cell.source).body   # nbdev directives are already stripped from `cell.source`
    except SyntaxError: return False            # IPython magics: never needed by show_doc
    if not trees or any(map(_is_nbdev_export, trees)): return False
    # (stock nbdev skips any cell whose text has 'nbdev_export()', so also an exported function that mentions it)
    if cell.directives_.keys() & _RUN_DIRECTIVES: return True
    return all(map(_is_import, trees)) or all(map(_is_show_doc, trees))

class _NoExec:
    "nbdev's processors without `exec_show_docs`: the page of a notebook whose show_doc cells failed"
    def __call__(self, nb):
        from nbdev.process import NBProcessor
        from nbdev.processors import FilterDefaults, exec_show_docs
        return NBProcessor(nb=nb, procs=[p for p in FilterDefaults().procs() if p is not exec_show_docs]).process()

def proc_notebooks()->dict:
    "Run nbdev's `proc_nbs` over nbs/ into `_proc/` (serially, in this process); returns {notebook: error}"
    import nbdev.processors, nbdev.serve, nbdev.serve_drv
    # Stock nbdev also executes every cell that mixes imports with other code: here that is each stage's real work
    # (`run_stage(...)`), README examples and fixtures that load ML-100K or train models. Only what show_doc needs runs.
    nbdev.processors._do_eval = runs_for_docs
    drv_main, failed = nbdev.serve_drv.main, {}
    def main(o):
        src, dst, _ = o
        try: drv_main(o)
        except Exception as e:   # e.g. an exported cell's import fails: the page is built without its show_doc entries
            cause = e.__cause__ or e
            failed[src.name] = f'{type(cause).__name__}: {cause}\n\n{e}'
            drv_main((src, dst, _NoExec))
    nbdev.serve_drv.main = main
    os.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        nbdev.serve.proc_nbs(n_workers=0, force=True,   # n_workers=0: serial, in this process (so the patch holds)
                             skip_folder_re=r'^[_.]|^runs$')   # nbs/runs/: pipeline output, not docs
    return failed

# ---------------------------------------------------------------------------------------------------------------
# 2. _proc/*.ipynb -> mkdocs-jupyter pages

def settings()->dict:
    p = configparser.ConfigParser(interpolation=None)
    p.read(ROOT/'settings.ini')
    return dict(p['DEFAULT'])

def nb_title(path:Path)->str:
    "The notebook's first `# Title` heading (falls back to the file name)"
    for c in json.loads(path.read_text(encoding='utf-8'))['cells']:
        if c['cell_type'] != 'markdown': continue
        m = re.search(r'^#\s+(\S.*?)\s*$', ''.join(c['source']), flags=re.MULTILINE)
        if m: return m.group(1)
    return path.stem

def page_name(nb:Path)->str:
    "nbdev's page name: `03_split.ipynb` -> `split` (what the doc links in `_modidx.py` point to)"
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(nb.name)).stem

_re_opt = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
def split_options(src:str):
    "Quarto cell options left by nbdev (`#| echo: false`, ...) and the code without them"
    opts, lines = {}, src.splitlines()
    while lines and (m := _re_opt.match(lines[0])):
        opts[m.group(1)] = m.group(2).strip('"\'').lower()
        lines.pop(0)
    return opts, '\n'.join(lines).strip('\n')

_re_src_link = re.compile(r'\[source\]\((\S+?)\)\{[^}]*\}')
_re_sd_head = re.compile(r'^(#{2,6})[ \t]+(\S+)[ \t]*$', flags=re.MULTILINE)

_re_sym_link = re.compile(r'(\[`[^`\]]+`\]\()([\w.-]+)\.html#([^)\s]+)\)')

def fix_markdown(md:str, base:str, pages:dict, anchors:dict, show_doc:bool=False)->str:
    "Relative links to the site's own pages; for show_doc output also nbdev's anchor and a plain-HTML source link"
    md = md.replace(base, '')
    for nb, page in pages.items(): md = re.sub(rf'\]\((?:\./)?{re.escape(nb)}(#[^)]*)?\)', rf']({page}.html\1)', md)
    def sym(m):   # nbdev links every backticked name it knows; not every one has an entry (class-body methods, privates)
        page, a = m.group(2), m.group(3)
        if page not in anchors or a in anchors[page]: return m.group(0)
        owner = a.split('.')[0]
        return f'{m.group(1)}{page}.html' + (f'#{owner}' if owner in anchors[page] else '') + ')'
    md = _re_sym_link.sub(sym, md)
    if show_doc:
        md = _re_src_link.sub(lambda m: f'<a class="sd-source" href="{html.escape(m.group(1))}" target="_blank">source</a>', md)
        def head(m):   # nbdev's anchor as the id: it links `Config.from_yaml` as `core.html#config.from_yaml`
            name, anchor, n = html.escape(m.group(2)), html.escape(m.group(2).lower()), len(m.group(1))
            return f'<h{n} class="sd-name" id="{anchor}">{name}<a class="anchor-link" href="#{anchor}">¶</a></h{n}>'
        md = _re_sd_head.sub(head, md, count=1)
    return md

def _show_doc_mds(cell)->list:
    "The markdown that a processed show_doc cell put out"
    if cell['cell_type'] != 'code' or not re.search(r'^show_doc\(', ''.join(cell['source']), flags=re.MULTILINE): return []
    return [''.join(o['data']['text/markdown']) for o in cell.get('outputs', []) if 'text/markdown' in o.get('data', {})]

def sd_anchors(proc:Path)->set:
    "nbdev's anchors of the show_doc entries in processed notebook `proc`"
    cells = json.loads(proc.read_text(encoding='utf-8'))['cells']
    return {m.group(2).lower() for c in cells for md in _show_doc_mds(c) for m in [_re_sd_head.search(md)] if m}

def title_cell_rest(nb:Path)->str:
    "What nbdev's frontmatter processor drops with the title: the rest of the first markdown cell with a `# Title`"
    for c in json.loads(nb.read_text(encoding='utf-8'))['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] != 'markdown' or not re.search(r'^#\s+\S', src, flags=re.MULTILINE): continue
        src = re.sub(r'^#\s+\S.*$\n?', '', src, count=1, flags=re.MULTILINE)
        src = re.sub(r'^>\s+\S.*$\n?', '', src, count=1, flags=re.MULTILINE)
        return re.sub(r'^-\s+\S.*:.*\S\s*$\n?', '', src, flags=re.MULTILINE).strip()   # nbdev's `- key: value` frontmatter
    return ''

def _md_cell(src): return {'cell_type': 'markdown', 'metadata': {}, 'source': src}

def convert(proc:Path, dest:Path, nb:Path, cfg:dict, pages:dict, anchors:dict, error:str|None=None):
    "Write the page for notebook `nb` (processed as `proc`) to `dest`"
    d = json.loads(proc.read_text(encoding='utf-8'))
    base = cfg['doc_host'].rstrip('/') + cfg['doc_baseurl'].rstrip('/') + '/'
    cells, fm = [], {}
    for c in d['cells']:
        src = ''.join(c.get('source', ''))
        if c['cell_type'] == 'raw' and src.lstrip().startswith('---'):
            fm = yaml.safe_load(src.strip().strip('-')) or {}
            continue
        if c['cell_type'] == 'markdown':
            if 'AUTOGENERATED! DO NOT EDIT' in src: continue
            cells.append(_md_cell(fix_markdown(src, base, pages, anchors)))
            continue
        if c['cell_type'] != 'code': continue
        opts, code = split_options(src)
        if opts.get('include') == 'false': continue
        outputs = [] if opts.get('output') == 'false' else c.get('outputs', [])
        sd = bool(re.match(r'show_doc\(', code))
        if opts.get('output') == 'asis' or sd:   # markdown output becomes part of the page
            mds = [''.join(o['data']['text/markdown']) for o in outputs if 'text/markdown' in o.get('data', {})]
            if mds:
                if opts.get('echo') != 'false' and not sd:
                    cells.append({**c, 'source': code, 'outputs': [], 'execution_count': None})
                cells.extend(_md_cell(fix_markdown(m, base, pages, anchors, show_doc=sd)) for m in mds)
                continue
            if sd: continue
        if not code.strip() and not outputs: continue
        meta = {k: v for k, v in c.get('metadata', {}).items() if k != 'language'}
        if opts.get('echo') == 'false': meta['tags'] = [*meta.get('tags', []), 'remove_input']
        cells.append({**c, 'metadata': meta, 'source': code, 'outputs': outputs})
    title = fm.get('title') or nb_title(nb)
    head = f'# {title}\n\n' + (f'> {fm["description"]}\n\n' if fm.get('description') else '')
    if nb.name != cfg.get('readme_nb', 'index.ipynb'):
        url = f"{cfg['git_url'].rstrip('/')}/blob/{cfg.get('branch', 'main')}/{cfg['nbs_path']}/{nb.name}"
        head += f'<p class="nb-source">Source notebook: <a href="{url}"><code>{cfg["nbs_path"]}/{nb.name}</code></a></p>\n'
    if error:
        head += (f'\n<div class="admonition warning"><p class="admonition-title">API entries missing</p>'
                 f'<p>The show_doc cells of this notebook failed when the site was built:</p>'
                 f'<pre>{html.escape(error[-2000:]).replace(chr(10), "&#10;")}</pre></div>\n')   # no blank line ends the HTML block
    rest = title_cell_rest(nb)
    d['cells'] = [_md_cell(head), *([_md_cell(fix_markdown(rest, base, pages, anchors))] if rest else []), *cells]
    dest.write_text(json.dumps(d, indent=1, ensure_ascii=False), encoding='utf-8')
    return title

# ---------------------------------------------------------------------------------------------------------------
# 3. mkdocs.yml and the build

EXTRA_CSS = """
.sd-name { margin-top: .2em; font-family: var(--md-code-font-family); }
.sd-source { float: right; font-size: .75em; }
.nb-source { font-size: .75em; color: var(--md-default-fg-color--light); }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
"""

SHIM = ROOT/'scripts'/'docs_assets'/'iframe-worker-shim.js'

def mkdocs_config(cfg:dict, nav:list)->dict:
    site = cfg['doc_host'].rstrip('/') + cfg['doc_baseurl'].rstrip('/') + '/'
    return {
        'site_name': cfg.get('title', cfg['lib_name']),
        'site_description': cfg.get('description', ''),
        'site_url': site,                  # GitHub Pages: doc_host + doc_baseurl from settings.ini
        'repo_url': cfg['git_url'],
        'edit_uri': '',                    # pages link their own notebook (page names drop the number prefix)
        'copyright': f"Copyright {cfg.get('copyright', '')}",
        'docs_dir': 'site',
        'site_dir': str(ROOT/cfg.get('doc_path', '_docs')),
        'use_directory_urls': False,       # page.html, so `_docs/` also works from the file system
        'strict': True,
        'theme': {'name': 'material', 'font': False,   # no font CDN: the site works offline
                  'features': ['navigation.top', 'navigation.footer', 'search.highlight', 'search.suggest',
                               'toc.follow', 'content.code.copy']},
        'extra_css': ['extra.css'],
        'extra': {'polyfills': [f'javascripts/{SHIM.name}']},   # the offline plugin would add it from a CDN
        'plugins': ['search',
                    {'offline': {}},       # search over file:// too (index in search_index.js, worker via the shim)
                    {'mkdocs-jupyter': {'execute': False, 'include': ['*.ipynb'], 'include_source': False,
                                        'ignore_h1_titles': False, 'toc_depth': 3, 'cache': False, 'no_prompt': True,
                                        'remove_tag_config': {'remove_input_tags': ['remove_input']}}}],
        'hooks': [str(ROOT/'scripts'/'docs_hooks.py')],   # unique heading ids, TOC from them; shared notebook CSS
        'nav': nav,
    }

def build(keep_going:bool=False)->int:
    t0 = time.time()
    cfg = settings()
    nbs = sorted((ROOT/cfg['nbs_path']).glob('*.ipynb'))
    nbs = [p for p in nbs if not p.name.startswith(('_', '.'))]
    readme = cfg.get('readme_nb', 'index.ipynb')
    failed = proc_notebooks()
    t1 = time.time()
    proc, site = ROOT/'_proc', ROOT/'_proc'/'site'
    shutil.rmtree(site, ignore_errors=True); site.mkdir(parents=True)
    pages = {}
    for nb in nbs:
        name = 'index' if nb.name == readme else page_name(nb)
        if name in pages.values() or (name == 'index' and nb.name != readme): name = nb.stem   # keep names unique
        pages[nb.name] = name
    anchors = {pages[nb.name]: sd_anchors(proc/nb.name) for nb in nbs}
    nav = []
    for nb in [n for n in nbs if n.name == readme] + [n for n in nbs if n.name != readme]:   # home first, then stages
        title = convert(proc/nb.name, site/f'{pages[nb.name]}.ipynb', nb, cfg, pages, anchors, failed.get(nb.name))
        nav.append({title: f'{pages[nb.name]}.ipynb'})
    (site/'extra.css').write_text(EXTRA_CSS)
    (site/'javascripts').mkdir(); shutil.copy2(SHIM, site/'javascripts'/SHIM.name)
    mk = proc/'mkdocs.yml'
    mk.write_text(yaml.safe_dump(mkdocs_config(cfg, nav), sort_keys=False, allow_unicode=True))
    shutil.rmtree(ROOT/cfg.get('doc_path', '_docs'), ignore_errors=True)
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--quiet', '-f', str(mk)], cwd=ROOT,
                       env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    print(f'docs: {len(nbs)} notebooks; nbdev processing {t1-t0:.0f}s, site {time.time()-t1:.0f}s -> '
          f'{cfg.get("doc_path", "_docs")}/index.html', file=sys.stderr)
    for nb, err in failed.items():
        print(f'docs: {nb}: show_doc cells failed, its page has no API entries: {err.splitlines()[0]}', file=sys.stderr)
    if r.returncode: return r.returncode
    if failed and not keep_going:
        print('docs: FAILED (the site was built; `--keep-going` accepts pages without their API entries)', file=sys.stderr)
        return 1
    return 0

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--keep-going', action='store_true', help="exit 0 even when some notebooks' show_doc cells fail")
    sys.exit(build(ap.parse_args().keep_going))
