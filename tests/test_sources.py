"""Amazon Reviews 2018 (RecLM-gen's source) on a generated fixture in the dumps' own layout: each preprocessing rule
against a plain re-statement of RecLM-gen's `preprocess/data_preprocess_amazon.py` loops, bad lines, and the data stage.

The loader and its small hand-made examples are in nbs/02a_sources.ipynb; this file checks the same rules on a few
dozen random users and items, with repeated reviews, same-second ties, untitled and uncategorised items."""
import gzip, html, json, random
from collections import defaultdict
from pathlib import Path

import pytest

from reclm_nb.core import Config, DataCfg, apply_overrides
from reclm_nb.data import DataError, RecData, load_run_data, main_category
from reclm_nb.sources import (amazon2018_categories, amazon2018_files, load_amazon2018, load_dataset, load_reclmgen,
                              save_reclmgen, source_fingerprint)
from reclm_nb.stages import RunDir, run_stage


def review(u, a, t):
    return {'overall': 4.0, 'verified': True, 'reviewTime': '03 5, 2016', 'reviewerID': u, 'asin': a, 'style': {'Format:': ' DVD'},
            'reviewerName': 'N', 'reviewText': 'Fine.', 'summary': 'Ok', 'unixReviewTime': t, 'vote': '3'}


def meta_line(a, **kw):
    return {'category': ['Movies & TV', 'Movies'], 'description': ['A film.'], 'title': f'Film {a}', 'also_buy': [], 'brand': 'S',
            'feature': [], 'rank': '', 'also_view': [], 'main_cat': 'Movies & TV', 'date': '', 'price': '$4.99', 'asin': a,
            'imageURL': [], 'imageURLHighRes': []} | kw


def write_gz(path: Path, records, tail=''):
    path.write_bytes(gzip.compress((''.join(json.dumps(r) + '\n' for r in records) + tail).encode()))
    return path


def make_fixture(seed=0, n_users=40, n_items=80, max_per_user=14):
    "Reviews (with repeats and ties) and meta lines; item kinds: titled, untitled, no title key, no/empty category, store-only, no meta line"
    rng = random.Random(seed)
    items = [f'B{k:03d}' for k in range(n_items)]
    reviews = []
    for u in range(n_users):
        for a in rng.sample(items, rng.randint(2, max_per_user)):
            t = rng.randint(1, 20)               # few distinct seconds: many ties
            reviews.append(review(f'A{u:02d}', a, t))
            if rng.random() < 0.1: reviews.append(review(f'A{u:02d}', a, rng.randint(1, 20)))   # a repeated review
    rng.shuffle(reviews)
    meta = []
    for k, a in enumerate(items):
        kind = k % 10
        if kind == 0: meta.append(meta_line(a, title=''))
        elif kind == 1: meta.append({x: v for x, v in meta_line(a).items() if x != 'title'})
        elif kind == 2: meta.append(meta_line(a, category=[]))
        elif kind == 3: meta.append({x: v for x, v in meta_line(a).items() if x != 'category'})
        elif kind == 4: meta.append(meta_line(a, category=['Movies & TV']))
        elif kind == 5: continue                                    # no meta line at all
        elif kind == 6: meta.append(meta_line(a, category=['Movies & TV', 'TV', 'Comedy'], title='Tom &amp; Jerry\n  Show'))
        else: meta.append(meta_line(a))
    return reviews, meta


def reference(reviews, meta, kcore=0, require_category=True, user_core=0, item_core=0):
    "RecLM-gen's procedure with dicts and lists: `(sequences {user: [items]}, categories {item: [cumulative paths]})`"
    def core(user_items, uc, ic):
        while True:
            ucount = {u: len(s) for u, s in user_items.items()}
            icount = defaultdict(int)
            for s in user_items.values():
                for i in s: icount[i] += 1
            if all(c >= uc for c in ucount.values()) and all(c >= ic for c in icount.values()): return user_items
            user_items = {u: [i for i in s if icount[i] >= ic] for u, s in user_items.items() if ucount[u] >= uc}
    eligible = {m['asin'] for m in meta if ' '.join(html.unescape(m.get('title', '')).split()) and (m.get('category') or not require_category)}
    first, rows = set(), []
    for r in reviews:
        key = (r['reviewerID'], r['asin'])
        if key in first: continue
        first.add(key); rows.append((r['reviewerID'], r['asin'], r['unixReviewTime']))
    by_user = defaultdict(list)
    for u, a, t in rows: by_user[u].append((a, t))
    user_items = {u: [a for a, _ in sorted(s, key=lambda x: x[1])] for u, s in by_user.items()}
    if kcore: user_items = core(user_items, kcore, kcore)
    user_items = {u: [a for a in s if a in eligible] for u, s in user_items.items()}
    user_items = {u: s for u, s in user_items.items() if s}
    if user_core or item_core: user_items = core(user_items, user_core, item_core)
    user_items = {u: s for u, s in user_items.items() if s}   # (only with user_core 0 can a user end empty; RecData has none)
    used = {a for s in user_items.values() for a in s}
    cats = {}
    for m in meta:
        if m['asin'] not in used: continue
        path, out = [], []
        for c in (m.get('category') or [])[1:]:
            path.append(html.unescape(c)); out.append(', '.join(path))
        cats[m['asin']] = out
    return user_items, cats


@pytest.fixture(scope='module')
def dumps(tmp_path_factory):
    folder = tmp_path_factory.mktemp('amazon2018')
    reviews, meta = make_fixture()
    write_gz(folder/'Movies_and_TV.json.gz', reviews)
    write_gz(folder/'meta_Movies_and_TV.json.gz', meta)
    return folder, reviews, meta


@pytest.mark.parametrize('kcore,require_category,user_core,item_core',
                         [(0, True, 0, 0), (0, False, 0, 0), (2, True, 0, 0), (0, True, 5, 0), (0, True, 0, 4), (2, True, 4, 3), (3, False, 4, 3)])
def test_filters_match_reclmgen(dumps, kcore, require_category, user_core, item_core):
    "Each filter, alone and together, keeps exactly the users, items, order and categories RecLM-gen's loops keep"
    folder, reviews, meta = dumps
    d = load_amazon2018(*amazon2018_files(folder), kcore=kcore, require_category=require_category, user_core=user_core, item_core=item_core)
    seqs, cats = reference(reviews, meta, kcore, require_category, user_core, item_core)
    assert d.sequences == seqs
    if (kcore, require_category, user_core, item_core) != (0, True, 0, 0):   # the fixture makes every rule bite
        assert seqs != reference(reviews, meta, 0, True, 0, 0)[0]
    assert dict(zip(d.items['item_id'], d.items['categories'])) == cats
    assert d.items['item_id'].tolist() == [m['asin'] for m in meta if m['asin'] in cats]   # meta file order
    lens = [len(s) for s in d.sequences.values()]
    counts = defaultdict(int)
    for s in d.sequences.values():
        for i in s: counts[i] += 1
    assert min(lens) >= max(user_core, 1) and min(counts.values()) >= max(item_core, 1)
    for s in d.sequences.values(): assert len(set(s)) == len(s)            # repeated reviews kept once
    for u, ts in d.timestamps.items(): assert ts == sorted(ts)
    titles = dict(zip(d.items['item_id'], d.items['title']))
    kinds = {a: int(a[1:]) % 10 for a in titles}
    assert not {0, 1, 5} & set(kinds.values())                              # untitled or undescribed items never stay
    if require_category: assert not {2, 3} & set(kinds.values())
    for a, k in kinds.items():
        if k == 6: assert titles[a] == 'Tom & Jerry Show' and main_category(cats[a]) == 'TV, Comedy'
        if k == 4: assert cats[a] == [] and main_category(cats[a]) is None  # store-only: passes the rule, no category


def test_duplicates_keep_the_first_review(tmp_path):
    "A repeated (user, item) review keeps the first line's time, even when a later repeat is earlier"
    r = write_gz(tmp_path/'Movies_and_TV.json.gz', [review('U', 'A', 50), review('U', 'B', 40), review('U', 'A', 10), review('U', 'C', 50)])
    m = write_gz(tmp_path/'meta_Movies_and_TV.json.gz', [meta_line(a) for a in 'ABC'])
    d = load_amazon2018(r, m)
    assert d.sequences == {'U': ['B', 'A', 'C']} and d.timestamps == {'U': [40, 50, 50]}   # A, C tie at 50: file order


def reference_core(reviews, k):
    "The k-core of all (deduplicated) reviews as {user: set(items)}"
    user_items = defaultdict(set)
    for r in reviews: user_items[r['reviewerID']].add(r['asin'])
    while True:
        icount = defaultdict(int)
        for s in user_items.values():
            for i in s: icount[i] += 1
        new = {u: {i for i in s if icount[i] >= k} for u, s in user_items.items() if len(s) >= k}
        new = {u: s for u, s in new.items() if s}
        if new == user_items: return user_items
        user_items = new


def test_five_core_file_or_kcore_give_the_same_data(tmp_path):
    "RecLM-gen starts from the published 5-core file; the full file with kcore=5 ends the same when the user/item cores are larger"
    reviews, meta = make_fixture(seed=1, n_items=30, max_per_user=28)   # dense enough for a non-empty user 6 / item 5 core
    write_gz(tmp_path/'Movies_and_TV.json.gz', reviews)
    core5 = reference_core(reviews, 5)
    rows = [r for r in reviews if r['asin'] in core5.get(r['reviewerID'], ())]   # the 5-core dump (repeats included)
    assert len(core5) < 40
    write_gz(tmp_path/'Movies_and_TV_5.json.gz', rows)
    write_gz(tmp_path/'meta_Movies_and_TV.json.gz', meta)
    from_five = load_amazon2018(*amazon2018_files(tmp_path, 'Movies_and_TV_5'), user_core=6, item_core=5)
    from_full = load_amazon2018(*amazon2018_files(tmp_path, 'Movies_and_TV'), kcore=5, user_core=6, item_core=5)
    assert from_five.sequences == from_full.sequences and from_five.n_users > 0


def test_bad_lines_name_the_file_and_line(tmp_path, dumps):
    _, reviews, meta = dumps
    m = write_gz(tmp_path/'meta_Movies_and_TV.json.gz', meta[:3], tail=repr(meta[3]) + '\n')   # a Python-literal line
    r = write_gz(tmp_path/'Movies_and_TV.json.gz', reviews)
    with pytest.raises(DataError, match=r'meta_Movies_and_TV\.json\.gz: line 4: a Python dict literal, not JSON.*must be the JSON version'):
        load_amazon2018(r, m)
    r2 = write_gz(tmp_path/'cut.json.gz', reviews[:5], tail='{"reviewerID": "A00", "as')
    with pytest.raises(DataError, match=r'cut\.json\.gz: line 6: not valid JSON'):
        load_amazon2018(r2, m)
    r3 = tmp_path/'trunc.json.gz'; r3.write_bytes(gzip.compress(''.join(json.dumps(x) + '\n' for x in reviews).encode())[:-40])
    with pytest.raises(DataError, match=r'trunc\.json\.gz: cannot read past line'):
        load_amazon2018(r3, m)


def test_python_literals_are_never_evaluated(tmp_path):
    "A meta line that would run code if evaluated is refused as not-JSON; nothing runs"
    marker = tmp_path/'ran'
    evil = f"{{'asin': __import__('pathlib').Path({str(marker)!r}).touch(), 'title': 'x'}}\n"
    m = tmp_path/'meta_Movies_and_TV.json'; m.write_text(json.dumps(meta_line('A')) + '\n' + evil)
    r = write_gz(tmp_path/'Movies_and_TV.json.gz', [review('U', 'A', 1)])
    with pytest.raises(DataError, match='line 2: a Python dict literal'):
        load_amazon2018(r, m)
    assert not marker.exists()


def test_reclmgen_round_trip_keeps_category_paths(tmp_path, dumps):
    "Written as RecLM-gen pickles and read back, each item keeps its cumulative paths in order (deepest last)"
    folder, _, _ = dumps
    d = load_amazon2018(*amazon2018_files(folder), user_core=3)
    back = load_reclmgen(save_reclmgen(d, tmp_path/'rg'), name=d.name)
    assert back.items['categories'].tolist() == d.items['categories'].tolist()
    assert back.sequences == d.sequences
    assert amazon2018_categories(['Movies & TV', 'Movies', 'Drama', 'Crime']) == ['Movies', 'Movies, Drama', 'Movies, Drama, Crime']


def test_data_stage(tmp_path, dumps):
    "The data stage loads amazon2018 from the config (RecLM-gen's rules), saves it, and tracks only the two files"
    folder, reviews, meta = dumps
    ov = ['data.source=amazon2018', f'data.path={folder}', 'data.name=Movies_and_TV', 'data.require_category=true',
          'data.kcore=2', 'data.user_core=4', 'data.item_core=3']
    cfg = apply_overrides(Config(), ov)
    run = RunDir(tmp_path/'run')
    st = run_stage('data', cfg, run)
    d = load_run_data(run)
    assert d.sequences == reference(reviews, meta, 2, True, 4, 3)[0] and st['n_users'] == d.n_users
    assert d == load_dataset(DataCfg(source='amazon2018', path=str(folder), require_category=True, kcore=2, user_core=4, item_core=3))
    fp = source_fingerprint(cfg)
    write_gz(folder/'Books.json.gz', reviews[:3])        # another category in the same folder
    assert source_fingerprint(cfg) == fp
    assert isinstance(RecData.load(run.root/'data'), RecData)
