"""The teacher service for real: `reclm-nb teacher serve` in a subprocess on 127.0.0.1, serving Popularity trained on
ML-100K (smoke recipe); 200 concurrent requests; bad requests; several workers. Run with `-s` to see the latencies."""
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
from reclm_nb.teacher import TeacherClient

N_REQUESTS = 200

@pytest.fixture(scope='module')
def run_root(tmp_path_factory):
    "A run folder with the smoke recipe's data, split and a trained popularity model, built in-process"
    cfg = recipe_config('smoke', ['cf.models=[pop]'])
    run = RunDir(tmp_path_factory.mktemp('teacher_run'))
    save_config(cfg, run.root/'config.yaml')
    run_stage('cf', cfg, run)
    return run.root

def _start(run_root:Path, log:Path, *extra:str, timeout:float=90):
    "Start `reclm-nb teacher serve` on a free loopback port; returns (process, url) once /health answers"
    port = free_port()
    exe = BIN/'reclm-nb'
    head = [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from reclm_nb.pipeline import main; sys.exit(main())']
    cmd = [*head, 'teacher', 'serve', '--run', str(run_root), '--model', 'pop', '--host', '127.0.0.1', '--port', str(port), *extra]
    f = open(log, 'w')
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
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
    "A mix of RecLM-gen requests over the test examples: plain top-k, top-k with +C / -C, top-k with candidates, ranking"
    sp = load_run_split(RunDir(run_root))
    model = load_recommender(run_root/'cf'/'pop')
    cats = sorted({c for cs in model.item_categories.values() for c in cs})
    rng, es, out = random.Random(seed), sp.test, []
    for i in range(n):
        u = i % len(es)
        hist = es.histories[u][-sp.window:]
        body = {'users': [es.users[u]], 'item_lengths': [len(hist)], 'item_lists': [hist + ['0']*3], 'k': 10}  # padded, as RecLM-gen sends
        kind = i % 4
        if kind == 1: body['target_category'] = [rng.choice('+-') + rng.choice(cats)]
        if kind == 2: body['candidate_item_lists'] = [es.targets[u] + rng.sample(sp.item_ids, 19)]
        if kind == 3:
            body['candidate_item_lists'] = [es.targets[u] + rng.sample(sp.item_ids, 19)]; del body['k']
        out.append(('/ranking' if kind == 3 else '/inference', body))
    return out

def _expected(model, path:str, body:dict):
    "What the model itself answers"
    hist = [body['item_lists'][0][:body['item_lengths'][0]]]
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
    "200 callers with a request each in flight at once, a mix of top-k, +C/-C, candidates and ranking: on new connections, then on open ones"
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
            for (path, body), (_, answer, _) in zip(reqs, res): assert answer == _expected(model, path, body), (path, body)
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
           ('/ranking', {'item_lists': [['1']], 'k': 5}, 'candidate_item_lists: required')]
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
    assert (info['kind'], info['dataset'], info['protocol']['split']) == ('pop', 'ml-100k', 'loo')

def test_cli_several_workers_and_unknown_model(run_root, tmp_path):
    p, url = _start(run_root, tmp_path/'workers.log', '--workers', '2')
    try:
        cl = TeacherClient(url)
        assert cl.info()['n_items'] == load_recommender(run_root/'cf'/'pop').n_items
        assert len(cl.topk([['1', '2']], k=4, category='-Drama')[0]) == 4
        with pytest.raises(ValueError, match='unknown category'): cl.topk([['1']], k=3, category='+NoSuchGenre')
    finally: _stop(p)
    assert p.returncode is not None
    exe = BIN/'reclm-nb'
    head = [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from reclm_nb.pipeline import main; sys.exit(main())']
    r = subprocess.run([*head, 'teacher', 'serve', '--run', str(run_root), '--model', 'nope', '--port', str(free_port())],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "available: ['pop']" in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
