"""The teacher service for real: `reclm-nb teacher serve` in a subprocess on 127.0.0.1, serving Popularity trained on
ML-100K (smoke recipe); 200 concurrent requests checked against RecLM-gen's server computation; bad requests; teacher ranks
local vs remote; several workers under the strict semantics. Run with `-s` to see the latencies."""
import http.client, json, os, random, signal, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import BIN

from reclm_nb.core import logger, recipe_config, save_config
from reclm_nb.stages import RunDir, run_stage
from reclm_nb.cf import load_recommender
from reclm_nb.split import load_run_split
from reclm_nb.http import RequestError, free_port
from reclm_nb.teacher import TeacherClient, teacher_rank, ENV_SEMANTICS

N_REQUESTS = 200

@pytest.fixture(scope='module')
def run_root(tmp_path_factory):
    "A run folder with the smoke recipe's data, split and a trained popularity model, built in-process"
    cfg = recipe_config('smoke', ['cf.models=[pop]'])
    run = RunDir(tmp_path_factory.mktemp('teacher_run'))
    save_config(cfg, run.root/'config.yaml')
    run_stage('cf', cfg, run)
    return run.root

def _start(run_root:Path, log:Path, *extra:str, timeout:float=90, env:dict|None=None):
    "Start `reclm-nb teacher serve` on a free loopback port; returns (process, url) once /health answers"
    port = free_port()
    exe = BIN/'reclm-nb'
    head = [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from reclm_nb.pipeline import main; sys.exit(main())']
    cmd = [*head, 'teacher', 'serve', '--run', str(run_root), '--model', 'pop', '--host', '127.0.0.1', '--port', str(port), *extra]
    f = open(log, 'w')
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})})
    url, t0 = f'http://127.0.0.1:{port}', time.monotonic()
    while time.monotonic() - t0 < timeout:
        if p.poll() is not None: raise AssertionError(f'the server exited with {p.returncode}:\n{log.read_text()[-3000:]}')
        try:
            if httpx.get(url + '/health', timeout=1).json() == {'status': 'ok'}: return p, url
        except (httpx.HTTPError, ValueError): pass
        time.sleep(0.1)
    _stop(p)
    raise AssertionError(f'the server was not healthy within {timeout} s:\n{log.read_text()[-3000:]}')

def _stop(p:subprocess.Popen):
    "SIGTERM the server's process group (uvicorn stops its workers), SIGKILL if it lingers"
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait(10)
    return p.returncode

@pytest.fixture(scope='module')
def server(run_root, tmp_path_factory):
    log = tmp_path_factory.mktemp('teacher_log')/'server.log'
    p, url = _start(run_root, log)
    yield url
    _stop(p)

def _requests(run_root:Path, n:int, seed:int=0)->list:
    """A mix of requests as RecLM-gen's client sends them over the test examples: plain top-k, top-k with +C / -C, top-k with
    candidates (one from the history, one unknown; sometimes more k than candidates), ranking (the same candidates)"""
    sp = load_run_split(RunDir(run_root))
    model = load_recommender(run_root/'cf'/'pop')
    cats = sorted({c for cs in model.item_categories.values() for c in cs})
    rng, es, out = random.Random(seed), sp.test, []
    for i in range(n):
        u = i % len(es)
        hist = es.histories[u][-sp.window:]
        body = {'users': [es.users[u]], 'item_lengths': [len(hist)], 'item_lists': [hist], 'k': 10, 'immediately': i % 2}
        kind = i % 4
        if kind == 1: body['target_category'] = [rng.choice('+-') + rng.choice(cats)]
        if kind in (2, 3):
            body['candidate_item_lists'] = [es.targets[u] + rng.sample(sp.item_ids, 17) + [hist[-1], 'no-such-item']]
            if i % 8 == 2: body['k'] = 25   # more than the 20 known candidates: RecLM-gen fills up with other items
        if kind == 3: del body['k']
        out.append(('/ranking' if kind == 3 else '/inference', body))
    return out

def _reclmgen(model, path:str, body:dict)->dict:
    """What RecLM-gen's server (unirec/asyc_server.py) answers, computed here in numpy for each user: candidates get +1 and every
    item -1, the top k of all items (so always k items); ranks among all items, history unmasked, unknown candidates dropped.
    Ties go to the lower item index."""
    idx, ids, out = model.item_index, model.item_ids, []
    for u, hist in enumerate(body['item_lists']):
        s = model.score([[idx[i] for i in hist]], body.get('users') and body['users'][u:u+1])[0].astype(np.float64)
        cands = (body.get('candidate_item_lists') or [None]*(u+1))[u]
        if path == '/ranking':
            pos = np.empty(len(s), np.int64); pos[np.argsort(-s, kind='stable')] = np.arange(len(s))
            out.append([int(pos[idx[c]]) for c in cands if c in idx]); continue
        h, everything, cat = {idx[i] for i in hist}, set(range(len(s))), (body.get('target_category') or [None]*(u+1))[u]
        if cands is not None: cs = {idx[c] for c in cands if c in idx}
        elif cat:
            C = {idx[i] for i, c in model.item_categories.items() if cat[1:] in c and i in idx}
            cs = C - h if cat[0] == '+' else everything - C - h
        else: cs = everything - h
        bonus = np.zeros(len(s)); bonus[list(cs)] = 1
        p = np.exp(s - s.max()); p = p/p.sum() + bonus - 1   # their softmax and +1/-1; float64 keeps the score order
        order = np.lexsort((np.arange(len(s)), -s, -bonus))[:body['k']]
        assert np.array_equal(p[order], np.sort(p)[::-1][:body['k']])   # the same top k as their +1/-1 scores, up to ties
        out.append([ids[i] for i in order])
    return {'ranking' if path == '/ranking' else 'inference': out}

def _strict(model, path:str, body:dict)->dict:
    "What the strict semantics answers: the model's own `topk` / `rank` on the history cut to `item_lengths`"
    hist = [x[:L] for x, L in zip(body['item_lists'], body['item_lengths'])]
    if path == '/ranking': return {'ranking': model.rank(hist, body['candidate_item_lists'])}
    return {'inference': model.topk(hist, body['k'], candidates=body.get('candidate_item_lists'), category=body.get('target_category'))}

class _Conns:
    "One keep-alive HTTP connection per concurrent caller (stdlib `http.client`: light enough that the server, not the load generator, is measured)"
    def __init__(self, url:str, n:int): self.host, self.port = httpx.URL(url).host, httpx.URL(url).port; self.conns = [None]*n
    def post(self, i:int, path:str, body:dict)->tuple:
        if self.conns[i] is None: self.conns[i] = http.client.HTTPConnection(self.host, self.port, timeout=60)
        c = self.conns[i]
        c.request('POST', path, json.dumps(body), {'Content-Type': 'application/json'})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    def close(self):
        for c in self.conns:
            if c is not None: c.close()

def _burst(conns:_Conns, reqs:list)->tuple:
    "Send request i on connection i from its own thread, all released at once; returns ([(status, answer, seconds)], wall seconds)"
    go = threading.Barrier(len(reqs) + 1, timeout=60)
    def one(i):
        path, body = reqs[i]
        go.wait()
        t0 = time.perf_counter()
        try: status, answer = conns.post(i, path, body)
        except (OSError, http.client.HTTPException, ValueError) as e: return None, repr(e), time.perf_counter() - t0
        return status, answer, time.perf_counter() - t0
    with ThreadPoolExecutor(len(reqs)) as ex:
        futs = [ex.submit(one, i) for i in range(len(reqs))]
        go.wait(); t0 = time.perf_counter()
        res = [f.result(timeout=120) for f in futs]
    return res, time.perf_counter() - t0

def test_load_200_concurrent_requests(server, run_root):
    "RecLM-gen's answers to 200 callers with a request each in flight at once, a mix of top-k, +C/-C, candidates and ranking: on new connections, then on open ones"
    reqs = _requests(run_root, N_REQUESTS)
    model = load_recommender(run_root/'cf'/'pop')
    conns = _Conns(server, N_REQUESTS)
    try:
        for round_ in ('new connections', 'open connections'):
            stats0 = httpx.get(server + '/info').json()['stats']
            res, wall = _burst(conns, reqs)
            stats = httpx.get(server + '/info').json()['stats']
            errors = [(i, r) for i, r in enumerate(res) if r[0] != 200]
            assert not errors, f'{round_}: {len(errors)} of {N_REQUESTS} requests failed, e.g. {errors[:3]}'
            for (path, body), (_, answer, _) in zip(reqs, res): assert answer == _reclmgen(model, path, body), (path, body)
            lat = np.array([r[2] for r in res])*1000
            p50, p99 = np.percentile(lat, [50, 99])
            batches, rows = stats['batches'] - stats0['batches'], stats['rows'] - stats0['rows']
            msg = (f'teacher load test ({round_}): {N_REQUESTS} concurrent requests on 127.0.0.1, 0 errors; latency p50 {p50:.1f} ms, '
                   f'p99 {p99:.1f} ms, max {lat.max():.1f} ms; wall {wall:.2f} s ({N_REQUESTS/wall:.0f} req/s); '
                   f'{batches} batches, {rows/max(batches, 1):.1f} rows per batch on average')
            print('\n' + msg); logger.info(msg)
            assert rows == N_REQUESTS and batches < N_REQUESTS  # requests really were batched
    finally: conns.close()

def test_bad_requests_are_4xx_and_the_server_stays_up(server):
    bad = [('/inference', b'{"item_lists": [[', 'malformed JSON'),
           ('/inference', {'item_lists': [['no-such-item']], 'k': 5}, "item_lists[0][0]: unknown item id"),
           ('/inference', {'item_lists': [[]], 'k': 5}, 'item_lists[0]: empty'),
           ('/inference', {'item_lists': [['1']], 'users': ['1', '2'], 'k': 5}, 'users'),
           ('/inference', {'item_lists': [['1']], 'k': 0}, 'k: expected 1 <= k'),
           ('/inference', {'item_lists': [['1']], 'k': 10**6}, 'k: expected 1 <= k'),
           ('/inference', {'item_lists': [['1']], 'k': 'ten'}, 'k: expected an integer'),
           ('/inference', {'item_lists': [['1']], 'k': 5, 'target_category': ['+NoSuchGenre']}, "unknown category 'NoSuchGenre'"),
           ('/inference', {'item_lists': [['1']], 'k': 5, 'target_category': ['Drama']}, "expected '+NAME'"),
           ('/inference', {'item_lists': [[1.5]], 'k': 5}, 'item_lists[0][0]: expected an item id'),
           ('/ranking', {'item_lists': [['1']], 'k': 5}, 'candidate_item_lists: required'),
           ('/ranking', {'item_lists': [['1']], 'candidate_item_lists': [['2', 'no-such-item']], 'semantics': 'strict'}, 'unknown item id'),
           ('/inference', {'item_lists': [['1']], 'item_lengths': ['1'], 'k': 5}, 'item_lengths[0]: expected an integer')]
    with httpx.Client(base_url=server, timeout=30) as c:
        for _ in range(5):
            for path, body, msg in bad:
                r = c.post(path, content=body) if isinstance(body, bytes) else c.post(path, json=body)
                assert 400 <= r.status_code < 500 and msg in r.json()['detail'], (body, r.status_code, r.text)
        assert c.get('/health').json() == {'status': 'ok'}
        r = c.post('/inference', json={'item_lists': [['1', '2']], 'k': 3})
        assert r.status_code == 200 and len(r.json()['inference'][0]) == 3
    cl = TeacherClient(server, retries=0)
    with pytest.raises(RequestError, match='HTTP 400') as e: cl.topk([['no-such-item']], k=3)
    assert (e.value.status, e.value.field) == (400, 'item_lists[0][0]') and isinstance(e.value, ValueError)
    assert cl.topk([['1', '2']], k=3) == r.json()['inference']

def test_client_evaluates_the_remote_model(server, run_root):
    from reclm_nb.evaluate import evaluate
    sp = load_run_split(RunDir(run_root))
    local = load_recommender(run_root/'cf'/'pop')
    remote = TeacherClient(server)
    assert remote.n_items == local.n_items and not remote.can_score
    vals = lambda rec: evaluate(rec, sp, 'test', ks=[5, 10], progress=False).table.query("metric != 'seconds_per_user'").value.tolist()
    assert vals(remote) == vals(local)
    info = remote.info()
    assert (info['kind'], info['dataset'], info['protocol']['split'], info['semantics']) == ('pop', 'ml-100k', 'loo', 'reclmgen')

def _rank_cases(run_root:Path, n:int=30, seed:int=1)->tuple:
    "Histories and lists to rank as the RL reward has them: known items, the history's own, unknown ids and None"
    sp = load_run_split(RunDir(run_root))
    rng, es = random.Random(seed), sp.test
    hs = [es.histories[u][-sp.window:] for u in range(n)]
    items = [rng.sample(sp.item_ids, 5) + [h[-1], None, 'no-such-item', int(es.targets[u][0])] for u, h in enumerate(hs)]
    for row in items: rng.shuffle(row)
    return hs, items, [es.users[u] for u in range(n)]

def test_teacher_rank_local_and_remote_agree(server, run_root):
    local = load_recommender(run_root/'cf'/'pop')
    hs, items, users = _rank_cases(run_root)
    want = teacher_rank(local, hs, items, users)
    assert want == teacher_rank(TeacherClient(server, batch_size=7), hs, items, users)
    for h, row, r in zip(hs, items, want):
        assert [x is None for x in r] == [x is None or str(x) not in local.item_index for x in row]
        body = {'item_lists': [h], 'candidate_item_lists': [[str(x) for x in row if x is not None]]}
        assert [x for x in r if x is not None] == _reclmgen(local, '/ranking', body)['ranking'][0]   # RecLM-gen's ranks, history unmasked

def test_cli_several_workers_strict_and_unknown_model(run_root, tmp_path):
    "Two workers serving the strict semantics (chosen by the environment): its answers, and a client that works the same on it"
    p, url = _start(run_root, tmp_path/'workers.log', '--workers', '2', env={ENV_SEMANTICS: 'strict'})
    model = load_recommender(run_root/'cf'/'pop')
    try:
        cl = TeacherClient(url)
        info = cl.info()
        assert (info['n_items'], info['semantics']) == (model.n_items, 'strict')
        assert len(cl.topk([['1', '2']], k=4, category='-Drama')[0]) == 4
        with pytest.raises(ValueError, match='unknown category'): cl.topk([['1']], k=3, category='+NoSuchGenre')
        with httpx.Client(base_url=url, timeout=30) as c:
            for path, body in _requests(run_root, 12):
                hist = body['item_lists'][0]
                body = {**body, 'item_lists': [hist + ['0']*3]}   # padded at the end, cut to item_lengths
                if 'candidate_item_lists' in body: body['candidate_item_lists'] = [[i for i in body['candidate_item_lists'][0] if i != 'no-such-item']]
                r = c.post(path, json=body)
                assert r.status_code == 200 and r.json() == _strict(model, path, body), (path, body, r.text)
            r = c.post('/ranking', json={'item_lists': [['1']], 'candidate_item_lists': [['2', 'no-such-item']]})
            assert r.status_code == 400 and 'candidate_item_lists[0][1]: unknown item id' in r.json()['detail']
        hs, items, users = _rank_cases(run_root, 10)
        assert teacher_rank(cl, hs, items, users) == teacher_rank(model, hs, items, users)   # the client asks for RecLM-gen's ranks
    finally: _stop(p)
    assert p.returncode is not None
    exe = BIN/'reclm-nb'
    head = [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from reclm_nb.pipeline import main; sys.exit(main())']
    r = subprocess.run([*head, 'teacher', 'serve', '--run', str(run_root), '--model', 'nope', '--port', str(free_port())],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "available: ['pop']" in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
