"""Robustness checks of the data stage a reader of the notebooks need not see: hostile pickles run nothing, and the
data stage leaves nothing half-written when its input is bad or its save fails.

Every loader's error messages (malformed RecBole files, truncated JSONL/gzip, missing fields, unknown items,
duplicate ids, empty sequences, missing titles, ...) are documented and checked where the loader is defined:
nbs/02_data.ipynb (`RecData`, validation, save/load, filters) and nbs/02a_sources.ipynb (the loaders, the stage)."""
import os, pickle
from pathlib import Path

import pandas as pd
import pytest

from reclm_nb.core import Config, apply_overrides
from reclm_nb.stages import RunDir, run_stage
from reclm_nb.data import DataError, RecData, load_run_data
from reclm_nb.sources import load_recbole, load_reclmgen, safe_load_pickle, save_reclmgen

INTER = 'user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t3\t100\n1\t20\t4\t200\n2\t20\t5\t150\n'
ITEM = 'item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tToy Story\t1995\tAnimation Comedy\n20\tHeat\t1995\tAction\n'


def write_recbole(folder: Path, name: str, inter=INTER, item=ITEM) -> Path:
    "RecBole atomic files `{name}.inter` and `{name}.item` in `folder` (str or bytes content)"
    folder.mkdir(parents=True, exist_ok=True)
    for ext, content in (('inter', inter), ('item', item)):
        (folder/f'{name}.{ext}').write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


class Hostile:
    "Unpickling this runs a shell command that creates `marker`"
    def __init__(self, marker: Path): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


# --- hostile pickles ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('which', ['alone', 'category', 'meta', 'sequential', 'ranking_candidate'])
def test_hostile_pickle_runs_nothing(tmp_path, which):
    "A pickle that would run a shell command is refused before it runs, read on its own or inside a RecLM-gen folder"
    marker = tmp_path/'pwned'
    payload = pickle.dumps({'x': [Hostile(marker)]})
    pickle.loads(payload)                       # the payload is real: a plain unpickler runs it
    assert marker.exists(); marker.unlink()
    if which == 'alone':
        path = tmp_path/'evil.pickle'; path.write_bytes(payload)
        load = lambda: safe_load_pickle(path)
    else:
        items = pd.DataFrame({'item_id': ['i1', 'i2'], 'title': ['One', 'Two'], 'categories': [['Books'], ['Books']], 'text': ['One.', 'Two.']})
        folder = save_reclmgen(RecData(items, {'u1': ['i1', 'i2'], 'u2': ['i2']}, extra={'ranking_candidates': {'u1': ['i2']}}), tmp_path/'rg')
        assert load_reclmgen(folder).n_users == 2   # the folder loads before we spoil one file
        (folder/f'{which}.pickle').write_bytes(payload)
        load = lambda: load_reclmgen(folder)
    with pytest.raises(DataError, match=rf"{'evil' if which == 'alone' else which}\.pickle: refused to load"):
        load()
    assert not marker.exists()


# --- the stage on bad input -----------------------------------------------------------------------------------------

def _stage_files(run: RunDir) -> list:
    "Every name in the run's data/ folder, hidden temporary files included"
    folder = run.root/'data'
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize('inter', [INTER + '2\t10\n',                     # wrong column count
                                   INTER + '2\t99\t1\t300\n',             # unknown item
                                   INTER.encode() + b'3\t1\xff0\t1\t1\n'])  # bad bytes
def test_data_stage_on_bad_input_leaves_nothing(tmp_path, inter):
    folder = write_recbole(tmp_path/'bad', 'bad', inter=inter)
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
    folder = write_recbole(tmp_path/'good', 'good')
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
