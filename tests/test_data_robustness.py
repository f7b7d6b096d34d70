"Malformed and hostile inputs to `reclm_nb.data`: each must raise `DataError` naming the file or field, and leave nothing half-written"
import gzip, json, os, pickle
from pathlib import Path

import pandas as pd
import pytest

from reclm_nb.core import Config, DataCfg, RunDir, apply_overrides, run_stage
from reclm_nb.data import (DataError, RecData, data_stage, kcore, load_amazon2023, load_dataset, load_reclmgen, load_recbole,
                           load_run_data, safe_load_pickle, save_reclmgen)

INTER = 'user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t3\t100\n1\t20\t4\t200\n2\t20\t5\t150\n'
ITEM = 'item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tToy Story\t1995\tAnimation Comedy\n20\tHeat\t1995\tAction\n'


def write_recbole(folder: Path, name='toy', inter=INTER, item=ITEM) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for ext, content in (('inter', inter), ('item', item)):
        (folder/f'{name}.{ext}').write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def write_reclmgen(folder: Path, **override) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    content = {'category': {'Books': ['i1', 'i2']}, 'meta': {'i1': {'title': 'One'}, 'i2': {'title': 'Two'}},
               'sequential': {'u1': ['i1', 'i2'], 'u2': ['i2']}} | override
    for k, v in content.items():
        (folder/f'{k}.pickle').write_bytes(v if isinstance(v, bytes) else pickle.dumps(v, protocol=4))
    return folder


def items_frame(**cols) -> pd.DataFrame:
    base = {'item_id': ['a', 'b'], 'title': ['A', 'B'], 'categories': [['x'], []], 'text': ['A.', 'B.']}
    return pd.DataFrame(base | cols)


class Hostile:
    "Unpickling this would run a shell command that creates a marker file"
    marker = None
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


# --- hostile pickles ---------------------------------------------------------------------------------------------

def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path/'pwned'
    Hostile.marker = marker
    p = tmp_path/'evil.pickle'
    p.write_bytes(pickle.dumps({'x': [Hostile()]}))
    with pytest.raises(DataError) as e:
        safe_load_pickle(p)
    msg = str(e.value)
    assert 'evil.pickle' in msg and f'{os.system.__module__}.system' in msg and 'refused' in msg
    assert not marker.exists()


@pytest.mark.parametrize('which', ['category', 'meta', 'sequential'])
def test_hostile_pickle_in_reclmgen_folder(tmp_path, which):
    marker = tmp_path/'pwned'
    Hostile.marker = marker
    folder = write_reclmgen(tmp_path/'rg', **{which: pickle.dumps(Hostile())})
    with pytest.raises(DataError, match=rf'{which}\.pickle: refused to load'):
        load_reclmgen(folder)
    assert not marker.exists()


def test_pickle_importing_a_harmless_class_is_also_refused(tmp_path):
    p = tmp_path/'frame.pickle'
    p.write_bytes(pickle.dumps(pd.DataFrame({'a': [1]})))
    with pytest.raises(DataError, match='frame.pickle: refused to load pandas'):
        safe_load_pickle(p)


def test_reclmgen_round_trip(tmp_path):
    folder = write_reclmgen(tmp_path/'rg', ranking_candidate={'u1': ['i2'], 'u2': ['i1']})
    x = load_reclmgen(folder, name='rg')
    assert load_reclmgen(save_reclmgen(x, tmp_path/'out'), name='rg') == x
    assert x.extra['ranking_candidates'] == {'u1': ['i2'], 'u2': ['i1']}


# --- malformed files -----------------------------------------------------------------------------------------------

def test_truncated_jsonl_line(tmp_path):
    rev = {'user_id': 'U1', 'parent_asin': 'A', 'rating': 5.0, 'timestamp': 1672531200000, 'title': 't', 'text': 'x'}
    reviews = tmp_path/'Cat.jsonl'
    reviews.write_text(json.dumps(rev) + '\n' + json.dumps(rev)[:25])
    meta = tmp_path/'meta_Cat.jsonl'
    meta.write_text(json.dumps({'parent_asin': 'A', 'title': 'Thing', 'main_category': 'M', 'categories': [],
                                'description': [], 'features': [], 'price': None}) + '\n')
    with pytest.raises(DataError, match=r'Cat\.jsonl: line 2: not valid JSON'):
        load_amazon2023(reviews, meta)


def test_truncated_gzip_jsonl(tmp_path):
    rev = {'user_id': 'U1', 'parent_asin': 'A', 'timestamp': 1672531200000}
    reviews = tmp_path/'Cat.jsonl.gz'
    reviews.write_bytes(gzip.compress((json.dumps(rev) + '\n').encode() * 50)[:-20])
    with pytest.raises(DataError, match=r'Cat\.jsonl\.gz: cannot read past line'):
        load_amazon2023(reviews, tmp_path/'meta_Cat.jsonl')


def test_jsonl_missing_field(tmp_path):
    reviews = tmp_path/'Cat.jsonl'
    reviews.write_text(json.dumps({'user_id': 'U1', 'timestamp': 1}) + '\n')
    with pytest.raises(DataError, match=r"Cat\.jsonl: line 1: missing field\(s\) \['parent_asin'\]"):
        load_amazon2023(reviews, tmp_path/'meta_Cat.jsonl')


def test_non_utf8_item_file(tmp_path):
    item = ITEM.encode() + b'30\tMis\xe9rables, Les\t1995\tDrama\n'
    folder = write_recbole(tmp_path/'toy', item=item)
    with pytest.raises(DataError) as e:
        load_recbole(folder)
    msg = str(e.value)
    assert 'toy.item: line 4' in msg and "b'\\xe9'" in msg and 'UTF-8' in msg


def test_wrong_column_count(tmp_path):
    folder = write_recbole(tmp_path/'toy', inter=INTER + '2\t10\t4\n')
    with pytest.raises(DataError, match=r'toy\.inter: line 5: 3 tab-separated field\(s\), expected 4'):
        load_recbole(folder)
    folder = write_recbole(tmp_path/'toy2', name='toy2', item=ITEM + '30\tFargo\t1996\tCrime\textra\n')
    with pytest.raises(DataError, match=r'toy2\.item: line 4: 5 tab-separated field\(s\), expected 4'):
        load_recbole(folder)


def test_missing_header_field(tmp_path):
    folder = write_recbole(tmp_path/'toy', inter='uid:token\titem_id:token\n1\t10\n')
    with pytest.raises(DataError, match=r"toy\.inter: line 1 \(header\): no field\(s\) \['user_id'\]"):
        load_recbole(folder)


def test_inter_item_missing_from_item_file(tmp_path):
    folder = write_recbole(tmp_path/'toy', inter=INTER + '2\t99\t1\t300\n')
    with pytest.raises(DataError, match=r"toy\.inter: line 5: item_id '99' is not in toy\.item"):
        load_recbole(folder)


def test_unknown_item_id_in_sequences(tmp_path):
    with pytest.raises(DataError, match=r"sequences\['u1'\]\[1\] is 'zz': not in items\.item_id"):
        RecData(items_frame(), {'u1': ['a', 'zz']}).validate()
    folder = write_reclmgen(tmp_path/'rg', sequential={'u1': ['i1', 'i9']})
    with pytest.raises(DataError, match=r"rg \(RecLM-gen\): sequences\['u1'\]\[1\] is 'i9'"):
        load_reclmgen(folder)


def test_duplicate_item_ids(tmp_path):
    with pytest.raises(DataError, match=r"items\.item_id 'a' appears twice"):
        RecData(items_frame(item_id=['a', 'a']), {'u1': ['a']}).validate()
    folder = write_recbole(tmp_path/'toy', item=ITEM + '10\tAgain\t2000\tDrama\n')
    with pytest.raises(DataError, match=r"toy\.item: line 4: item_id '10' already defined on line 2"):
        load_recbole(folder)


def test_empty_sequence(tmp_path):
    with pytest.raises(DataError, match=r"mydata: sequences\['u2'\] is empty"):
        RecData(items_frame(), {'u1': ['a'], 'u2': []}, name='mydata').validate()
    with pytest.raises(DataError, match=r"sequences\['u2'\] is empty"):
        load_reclmgen(write_reclmgen(tmp_path/'rg', sequential={'u1': ['i1'], 'u2': []}))


def test_missing_title(tmp_path):
    with pytest.raises(DataError, match=r"items\.title of item_id 'b' \(row 1\) is ''"):
        RecData(items_frame(title=['A', '']), {'u1': ['a']}).validate()
    folder = write_recbole(tmp_path/'toy', item=ITEM + '30\t\t1996\tCrime\n')
    with pytest.raises(DataError, match=r"toy\.item: line 4: field 'movie_title' is empty"):
        load_recbole(folder)
    with pytest.raises(DataError, match=r"meta\.pickle: meta\['i2'\]\['title'\] is None"):
        load_reclmgen(write_reclmgen(tmp_path/'rg', meta={'i1': {'title': 'One'}, 'i2': {}}))


def test_misaligned_timestamps():
    with pytest.raises(DataError, match=r"timestamps\['u1'\] has 1 value\(s\) for 2 item\(s\)"):
        RecData(items_frame(), {'u1': ['a', 'b']}, {'u1': [5]}).validate()


def test_unknown_source():
    with pytest.raises(DataError, match=r"data\.source='csv' is not a known source; allowed: \['ml-100k', 'recbole', 'reclmgen', 'amazon2023', 'rec_data'\]"):
        load_dataset(DataCfg(source='csv'))


def test_missing_saved_folder(tmp_path):
    with pytest.raises(DataError, match='no saved RecData here'):
        RecData.load(tmp_path/'nope')


def test_kcore_needs_several_passes():
    items = pd.DataFrame({'item_id': list('abcd'), 'title': list('ABCD'), 'categories': [[]]*4, 'text': list('ABCD')})
    d = RecData(items, {'u1': ['a', 'b', 'c'], 'u2': ['a', 'b'], 'u3': ['c', 'd'], 'u4': ['d']})
    k = kcore(d, 2)
    assert k.sequences == {'u1': ['a', 'b'], 'u2': ['a', 'b']} and k.items['item_id'].tolist() == ['a', 'b']


# --- the stage on bad input -----------------------------------------------------------------------------------------

def _stage_files(run: RunDir) -> list:
    folder = run.root/'data'
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize('inter', [INTER + '2\t10\n',                     # wrong column count
                                   INTER + '2\t99\t1\t300\n',             # unknown item
                                   INTER.encode() + b'3\t1\xff0\t1\t1\n'])  # bad bytes
def test_data_stage_on_bad_input_leaves_nothing(tmp_path, inter):
    folder = write_recbole(tmp_path/'bad', name='bad', inter=inter)
    cfg = apply_overrides(Config(), ['data.source=recbole', f'data.path={folder}', 'data.name=bad'])
    run = RunDir(tmp_path/'run')
    with pytest.raises(DataError, match=r'bad\.inter: line'):
        run_stage('data', cfg, run)
    assert run.done_info('data') is None
    assert not (run.root/'data'/'done.json').exists()
    assert not any(n.endswith('.parquet') or n.endswith('.tmp') for n in _stage_files(run)), _stage_files(run)
    with pytest.raises(DataError, match='the data stage has not finished'):
        load_run_data(run)


def test_data_stage_failing_save_leaves_nothing(tmp_path, monkeypatch):
    "A failure while writing (here: the interactions file) leaves no parquet file and no temporary file behind"
    import reclm_nb.data as data_mod
    folder = write_recbole(tmp_path/'good', name='good')
    cfg = apply_overrides(Config(), ['data.source=recbole', f'data.path={folder}', 'data.name=good'])
    run = RunDir(tmp_path/'run')
    real = data_mod.pq.write_table
    def flaky(table, where, *a, **kw):
        if 'interactions' in str(where): raise OSError('disk full')
        return real(table, where, *a, **kw)
    monkeypatch.setattr(data_mod.pq, 'write_table', flaky)
    with pytest.raises(OSError, match='disk full'):
        run_stage('data', cfg, run)
    assert run.done_info('data') is None and _stage_files(run) == []
    monkeypatch.setattr(data_mod.pq, 'write_table', real)
    summary = run_stage('data', cfg, run)
    assert summary['n_users'] == 2 and _stage_files(run) == ['done.json', 'extra.json', 'interactions.parquet', 'items.parquet', 'meta.json']
    assert load_run_data(run) == load_recbole(folder)
