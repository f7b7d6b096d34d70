"""The documentation site for real: `bash scripts/docs.sh` builds `_docs/` from the notebooks, a local HTTP server on
127.0.0.1 serves it, and headless Chromium renders it. The home page is the README, the navigation lists every
notebook in name order under its `# Title`, the split page shows `leave_one_out`'s show_doc entry, search finds it,
no page raises a JS error, every exported name has its entry on its page, and no internal link or anchor is broken.
The build runs only the cells show_doc needs. Needs Debian's `chromium` (`.ci/run` installs it); deselect with
`-m "not docs"`."""
import ast, configparser, functools, html, http.server, importlib, inspect, json, re, subprocess, sys, threading, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from chromium import Chromium, find_chromium
from conftest import ROOT

pytestmark = pytest.mark.docs
DOCS = ROOT/'_docs'
_cfg = configparser.ConfigParser(interpolation=None); _cfg.read(ROOT/'settings.ini')
BASE = '/' + _cfg['DEFAULT']['doc_baseurl'].strip('/') + '/'   # where GitHub Pages serves the site
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))

def _cells(nb:Path): return json.loads(nb.read_text(encoding='utf-8'))['cells']
def _src(c): return ''.join(c['source'])

def nb_title(nb:Path)->str:
    "The notebook's first `# Title` heading"
    for c in _cells(nb):
        if c['cell_type'] == 'markdown' and (m := re.search(r'^#\s+(\S.*?)\s*$', _src(c), flags=re.MULTILINE)): return m.group(1)
    raise AssertionError(f'{nb.name} has no `# Title` heading')

def _docs_module():
    sys.path.insert(0, str(ROOT/'scripts'))
    try: return importlib.import_module('docs')
    finally: sys.path.remove(str(ROOT/'scripts'))

# ---------------------------------------------------------------------------------------------------------------
# fixtures: the build, the server, the browser

@pytest.fixture(scope='module')
def build():
    "`bash scripts/docs.sh`, once for this module: (CompletedProcess, seconds)"
    t = time.monotonic()
    r = subprocess.run(['bash', 'scripts/docs.sh'], cwd=ROOT, capture_output=True, text=True, timeout=900)
    return r, time.monotonic() - t

@pytest.fixture(scope='module')
def site(build):
    r, _ = build
    if not (DOCS/'index.html').exists(): pytest.fail(f'bash scripts/docs.sh built no site:\n{r.stderr[-6000:]}')
    return DOCS

def test_docs_build_succeeds(build):
    r, secs = build
    assert r.returncode == 0, f'bash scripts/docs.sh failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}'
    assert secs < 600, f'the docs build took {secs:.0f}s'
    print(f'docs built in {secs:.0f}s')

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

@pytest.fixture(scope='module')
def server(site):
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown(); httpd.server_close()

@pytest.fixture(scope='module')
def browser():
    exe = find_chromium()
    if not exe: pytest.fail('headless Chromium is needed to test the docs site: `apt-get install -y chromium` '
                            '(.ci/run does it), or deselect these tests with -m "not docs"')
    with Chromium(exe) as b: yield b

@pytest.fixture
def page(browser, server):
    "Open a page of the site; fails on uncaught JS errors"
    def open_(path):
        browser.errors.clear()
        browser.goto(f'{server}/{path}')
        browser.wait("document.querySelector('article.md-content__inner') !== null")
        return browser
    yield open_
    assert not browser.errors, f'JS errors: {browser.errors}'

def text(b, selector): return b.js(f"document.querySelector({json.dumps(selector)})?.innerText.trim() ?? null")

# ---------------------------------------------------------------------------------------------------------------
# the site in a browser

def test_home_page_is_the_readme(page):
    b = page('index.html')
    first = _src(_cells(ROOT/'nbs'/'index.ipynb')[0])
    title, subtitle = re.search(r'^#\s+(.+)$', first, re.M).group(1), re.search(r'^>\s*(.+)$', first, re.M).group(1)
    assert text(b, 'article h1').rstrip('¶') == title
    body = text(b, 'article')
    assert subtitle.strip() in body
    readme = (ROOT/'README.md').read_text(encoding='utf-8')
    for heading in re.findall(r'^## (.+)$', readme, flags=re.M): assert heading in body, heading
    code = b.js("[...document.querySelectorAll('article pre')].map(p => p.innerText).join('\\n')")
    for block in re.findall(r'```bash\n(.*?)```', readme, flags=re.S): assert block.strip() in code   # the README's code, as code

def test_navigation_lists_every_notebook_in_name_order(page):
    b = page('index.html')
    nav = b.js("""[...document.querySelectorAll('nav.md-nav--primary a.md-nav__link')]
                  .filter(a => !a.getAttribute('href').startsWith('#')).map(a => [a.getAttribute('href'), a.innerText.trim()])""")
    seen = list(dict.fromkeys(map(tuple, nav)))
    home = [nb for nb in NBS if nb.name == 'index.ipynb']
    want = [nb_title(nb) for nb in home + [nb for nb in NBS if nb.name != 'index.ipynb']]
    assert [t for _, t in seen] == want
    assert seen[0][0] == 'index.html'
    assert ('split.html', 'Split') in seen

def test_split_page_shows_the_leave_one_out_entry(page):
    from reclm_nb.split import leave_one_out
    b = page('split.html')
    assert text(b, 'article h1').rstrip('¶') == nb_title(ROOT/'nbs'/'03_split.ipynb')
    entry = b.js("""(() => { const h = document.getElementById('leave_one_out');
        if (!h || !/^H[2-6]$/.test(h.tagName)) return null;
        let out = [h.innerText], el = h.nextElementSibling;
        for (let i = 0; el && i < 4 && !/^H[1-6]$/.test(el.tagName); i++, el = el.nextElementSibling) out.push(el.innerText);
        return {visible: h.getBoundingClientRect().height > 0, text: out.join('\\n')}; })()""")
    assert entry and entry['visible'], 'no visible show_doc heading with id leave_one_out on split.html'
    assert 'def leave_one_out(' in entry['text']
    for p in inspect.signature(leave_one_out).parameters: assert p in entry['text'], p
    assert inspect.getdoc(leave_one_out).replace('`', '') in entry['text']
    assert b.js("[...document.querySelectorAll('nav.md-nav--secondary a')].some(a => a.getAttribute('href') === '#leave_one_out')")

def test_search_finds_an_api_entry(page):
    b = page('split.html')
    assert b.js("document.querySelector('input.md-search__input') !== null")
    b = page('index.html?q=leave_one_out')
    b.wait("document.querySelectorAll('.md-search-result__item').length > 0", timeout=30)
    hrefs = b.js("[...document.querySelectorAll('.md-search-result__item a')].map(a => a.getAttribute('href'))")
    assert any(urlsplit(h).path.endswith('/split.html') for h in hrefs), hrefs

def test_site_works_from_the_file_system(browser, site):
    "Opened as files (no server): pages, relative links and search (the offline plugin, its worker shim vendored)"
    browser.errors.clear()
    browser.goto((site/'index.html').as_uri() + '?q=leave_one_out')
    browser.wait("document.querySelectorAll('.md-search-result__item').length > 0", timeout=30)
    href = browser.js("document.querySelector('nav.md-nav--primary a.md-nav__link[href=\"split.html\"]')?.href")
    assert href == (site/'split.html').as_uri(), href
    browser.goto(href)
    assert text(browser, 'article h1').rstrip('¶') == 'Split'
    assert not browser.errors, browser.errors

def test_every_page_renders_without_js_errors(page, site):
    for f in sorted(site.glob('*.html')):
        if f.name == '404.html': continue
        b = page(f.name)
        assert (text(b, 'article h1') or '').strip(), f'{f.name}: no title'
        assert not b.errors, f'{f.name}: {b.errors}'

# ---------------------------------------------------------------------------------------------------------------
# the site's files

class _Refs(HTMLParser):
    "The ids and the relative href/src targets of one HTML page"
    def __init__(self):
        super().__init__(); self.ids, self.refs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name') if tag == 'a' else ('id',):
            if a.get(k): self.ids.add(a[k])
        for k in ('href', 'src'):
            v = a.get(k)
            if v is not None and not re.match(r'^([a-z][a-z0-9+.-]*:|//)', v, flags=re.I): self.refs.append((tag, k, v))

@functools.lru_cache(None)
def _parse(path:Path)->_Refs:
    p = _Refs(); p.feed(path.read_text(encoding='utf-8')); return p

def test_no_broken_internal_links(site):
    pages, broken = sorted(site.rglob('*.html')), []
    assert len(pages) > len(NBS)
    for page in pages:
        for tag, attr, ref in _parse(page).refs:
            u = urlsplit(ref)
            path = unquote(u.path)
            if path.startswith('/'):   # 404.html links from the site root, as GitHub Pages serves it at any path
                if not path.startswith(BASE): broken.append(f'{page.name}: <{tag} {attr}="{ref}"> (outside {BASE})'); continue
                path = str(site/path[len(BASE):])
            target = (page.parent/path).resolve() if path else page
            if target.is_dir(): target = target/'index.html'
            if not target.is_file() or site.resolve() not in target.parents: broken.append(f'{page.name}: <{tag} {attr}="{ref}"> (no file)')
            elif u.fragment and target.suffix == '.html' and unquote(u.fragment) not in _parse(target).ids:
                broken.append(f'{page.name}: <{tag} {attr}="{ref}"> (no anchor)')
    assert not broken, f'{len(broken)} broken internal links:\n' + '\n'.join(broken[:50])

def _exported_names(nb:Path):
    "Public functions and classes defined in `nb`'s `#| export` cells"
    for c in _cells(nb):
        src = _src(c)
        if c['cell_type'] != 'code' or not re.search(r'^#\|\s*exports?\s*$', src, flags=re.M): continue
        for t in ast.parse(src).body:
            if isinstance(t, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not t.name.startswith('_') \
               and not any(getattr(d, 'id', getattr(d, 'attr', '')) == 'patch' for d in t.decorator_list): yield t.name

def test_every_exported_name_has_its_entry(site):
    docs, missing = _docs_module(), []
    for nb in NBS:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', '\n'.join(_src(c) for c in _cells(nb)), flags=re.M)
        if not m: continue
        mod = importlib.import_module(f'reclm_nb.{m.group(1)}')
        page = site/f'{docs.page_name(nb)}.html'
        plain = html.unescape(re.sub(r'<[^>]+>', '', page.read_text(encoding='utf-8')))
        for name in _exported_names(nb):
            doc = (inspect.getdoc(getattr(mod, name)) or '').replace('`', '').split('\n')[0]
            if name.lower() not in _parse(page).ids: missing.append(f'{page.name}#{name.lower()} ({nb.name}: no entry)')
            elif doc not in plain: missing.append(f'{page.name}#{name.lower()} ({nb.name}: docstring not shown: {doc!r})')
    assert not missing, '\n'.join(missing)

# ---------------------------------------------------------------------------------------------------------------
# what the build executes

def test_build_runs_only_what_show_doc_needs(tmp_path, monkeypatch):
    "nbdev's processor with the docs build's rule: exported cells and show_doc run, a stage's work cell does not"
    from execnb.nbio import mk_cell, new_nb
    from nbdev.processors import FilterDefaults
    import nbdev.processors
    docs = _docs_module()
    monkeypatch.setattr(nbdev.processors, '_do_eval', docs.runs_for_docs)
    ran = tmp_path/'ran'
    nb = new_nb([mk_cell('# Toy\n> a toy stage', 'markdown'),
                 mk_cell('#| export\ndef twice(x:int, # a number\n         )->int:\n    "Double `x`"\n    return 2*x'),
                 mk_cell('#| export\ndef dev_only(src:str)->bool:\n    "Is `src` the `nbdev_export()` cell?"\n    return "nbdev_export()" in src'),
                 mk_cell(f'import pathlib\npathlib.Path({str(ran)!r}).write_text("heavy")'),   # like `run_stage(...)`
                 mk_cell(f'#| hide\nfrom pathlib import Path\nPath({str(ran)!r}).write_text("fixture")')])
    nb.path_ = str(tmp_path/'00_toy.ipynb')
    monkeypatch.chdir(ROOT)
    FilterDefaults()(nb)
    assert not ran.exists()
    outs = [''.join(o['data']['text/markdown']) for c in nb.cells for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
    assert any('### twice' in o and 'Double `x`' in o for o in outs), outs
    assert any('### dev_only' in o for o in outs), outs   # stock nbdev skips a cell that merely mentions nbdev_export()
    for nb_path in NBS:   # and in the project's notebooks: no stage work, no README example
        for c in _cells(nb_path):
            src = _src(c)
            if 'run_stage(' in src and not re.search(r'^#\|\s*export', src, flags=re.M):
                cell = mk_cell(src); cell.directives_ = {}
                assert not docs.runs_for_docs(cell), f'{nb_path.name}: {src[:200]}'
