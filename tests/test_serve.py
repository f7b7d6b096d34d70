"""The OpenAI-compatible server for real: `reclm-nb serve tiny` in a subprocess on 127.0.0.1, called through
`APIBackend` (httpx, several requests in flight): answers equal the in-process backend's greedy answers; bad
requests are 4xx and the server stays up; `chat_jsonl` survives a server killed mid-run; retries give up clearly."""
import json, os, signal, subprocess, sys, threading, time
from pathlib import Path

import httpx
import pytest
import torch
from conftest import BIN

from reclm_nb.backends import load_backend, APIBackend, read_jsonl_answers
from reclm_nb.http import RequestError, free_port

N, MAX_TOKENS = 16, 12
CONVS = [[{'role': 'system', 'content': 'You are an expert recommender engine.'},
          {'role': 'user', 'content': f'The user watched "Toy Story (1995)" and movie {i}. Recommend one new movie, as a quoted title.'}]
         for i in range(N)]
PROMPTS = ['The best movie of 1995 is', 'My favourite film:', 'Recommend: "']

def _cmd(*args):
    exe = BIN/'reclm-nb'
    head = [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from reclm_nb.pipeline import main; sys.exit(main())']
    return [*head, *args]

def _launch(log:Path)->tuple:
    "Start `reclm-nb serve tiny` on a free loopback port; returns (process, url, log) at once"
    port = free_port()
    p = subprocess.Popen(_cmd('serve', 'tiny', '--host', '127.0.0.1', '--port', str(port), '--threads', '1', '--max-batch', '8', '--dtype', 'fp32'),
                         stdout=open(log, 'w'), stderr=subprocess.STDOUT, start_new_session=True)
    return p, f'http://127.0.0.1:{port}', log

def _wait(p:subprocess.Popen, url:str, log:Path, timeout:float=150)->str:
    "`url` once the server answers /health"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if p.poll() is not None: raise AssertionError(f'the server exited with {p.returncode}:\n{log.read_text()[-3000:]}')
        try:
            if httpx.get(url + '/health', timeout=1).json() == {'status': 'ok'}: return url
        except (httpx.HTTPError, ValueError): pass
        time.sleep(0.1)
    _stop(p)
    raise AssertionError(f'the server was not healthy within {timeout} s:\n{log.read_text()[-3000:]}')

def _stop(p:subprocess.Popen, sig=signal.SIGTERM):
    "Signal the server's process group, SIGKILL if it lingers"
    if p.poll() is None:
        os.killpg(p.pid, sig)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait(10)
    return p.returncode

@pytest.fixture(scope='module')
def servers(tmp_path_factory):
    "Two servers started side by side (starting one takes ~20 s, mostly imports): one to use, one to kill"
    d = tmp_path_factory.mktemp('serve_logs')
    launched = [_launch(d/'server.log'), _launch(d/'victim.log')]
    try: yield [(p, _wait(p, url, log)) for p, url, log in launched]
    finally:
        for p, _, _ in launched: _stop(p)

@pytest.fixture(scope='module')
def server(servers): return servers[0][1]

@pytest.fixture(scope='module')
def local():
    "The same tiny model in this process: the reference answers"
    torch.set_num_threads(1)
    return load_backend('tiny', dtype='fp32', threads=1)

def test_chat_through_the_api_equals_in_process(server, local):
    api = APIBackend('tiny', server, concurrency=4, retries=0)
    t0 = time.perf_counter()
    got = api.chat(CONVS, max_new_tokens=MAX_TOKENS)
    wall = time.perf_counter() - t0
    assert got == local.chat(CONVS, max_new_tokens=MAX_TOKENS)
    st = httpx.get(server + '/stats').json()['stats']
    print(f'\n{N} chat requests, 4 in flight: {wall:.2f} s; server: {st["requests"]} requests in {st["batches"]} batches (largest {st["largest_batch"]})')
    assert st['largest_batch'] >= 2   # concurrent requests were answered together
    assert api.usage['requests'] == N and api.usage['prompt_tokens'] > 0

def test_completions_and_models(server, local):
    api = APIBackend(base_url=server, retries=0)        # the model name comes from /v1/models
    assert (api.model, api.models()) == ('tiny', ['tiny'])
    assert api.complete(PROMPTS, max_new_tokens=8, stop=['\n']) == local.complete(PROMPTS, max_new_tokens=8, stop=['\n'])
    j = httpx.post(server + '/v1/completions', json={'model': 'tiny', 'prompt': PROMPTS, 'max_tokens': 8}, timeout=60).json()
    assert j['object'] == 'text_completion' and j['model'] == 'tiny' and [c['index'] for c in j['choices']] == [0, 1, 2]
    assert [c['text'] for c in j['choices']] == local.complete(PROMPTS, max_new_tokens=8)
    assert j['usage']['prompt_tokens'] > 0 and j['usage']['total_tokens'] == j['usage']['prompt_tokens'] + j['usage']['completion_tokens']
    j = httpx.post(server + '/v1/chat/completions', json={'model': 'tiny', 'messages': CONVS[0], 'max_tokens': 4}, timeout=60).json()
    assert j['object'] == 'chat.completion' and j['choices'][0]['message']['role'] == 'assistant'
    assert j['choices'][0]['finish_reason'] in ('stop', 'length')

U = [{'role': 'user', 'content': 'hi'}]
BAD = [('/v1/chat/completions', b'{"messages": [', 400, 'body', 'malformed JSON'),
       ('/v1/chat/completions', {}, 400, 'messages', 'messages: required'),
       ('/v1/chat/completions', {'messages': [{'role': 'wizard', 'content': 'x'}]}, 400, 'messages[0].role', 'expected one of'),
       ('/v1/chat/completions', {'messages': [{'role': 'user'}]}, 400, 'messages[0].content', 'required'),
       ('/v1/chat/completions', {'messages': U, 'n': 3}, 400, 'n', 'only n=1'),
       ('/v1/chat/completions', {'messages': U, 'stream': True}, 400, 'stream', 'streaming is not supported'),
       ('/v1/chat/completions', {'messages': U, 'max_tokens': 0}, 400, 'max_tokens', 'expected an integer in 1..'),
       ('/v1/chat/completions', {'messages': U, 'max_tokens': 10**9}, 400, 'max_tokens', 'expected an integer in 1..'),
       ('/v1/chat/completions', {'messages': U, 'temperature': 'hot'}, 400, 'temperature', 'expected a number'),
       ('/v1/chat/completions', {'messages': U, 'model': 'gpt-4o'}, 404, 'model', "'gpt-4o' does not exist"),
       ('/v1/completions', {'prompt': [1, 2, 3]}, 400, 'prompt', 'token-id prompts'),
       ('/v1/completions', {'prompt': ''}, 400, 'prompt[0]', 'empty prompt')]

def test_bad_requests_are_4xx_and_the_server_stays_up(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        for _ in range(3):
            for path, body, status, param, msg in BAD:
                r = c.post(path, content=body) if isinstance(body, bytes) else c.post(path, json=body)
                err = r.json()['error']
                assert r.status_code == status and err['param'] == param and msg in err['message'], (body, r.status_code, r.text)
        assert c.get('/v1/nope').status_code == 404 and c.get('/v1/completions').status_code == 405
        assert c.get('/health').json() == {'status': 'ok'}
        r = c.post('/v1/chat/completions', json={'messages': U, 'max_tokens': 3})
        assert r.status_code == 200 and isinstance(r.json()['choices'][0]['message']['content'], str)
    api = APIBackend('tiny', server, retries=3)
    t0 = time.monotonic()
    with pytest.raises(RequestError, match=r'HTTP 400: messages\[0\]\.role') as e: api.chat([[{'role': 'wizard', 'content': 'x'}]])
    assert e.value.status == 400 and time.monotonic() - t0 < 2   # a 4xx is not retried
    with pytest.raises(RequestError, match="HTTP 404: model: the model 'gpt' does not exist here; this server serves 'tiny'"):
        APIBackend('gpt', server, retries=3).chat([U])

def test_chat_jsonl_resumes_after_the_server_is_killed(servers, local, tmp_path):
    keys = [f'user-{i}' for i in range(N)]
    expected = dict(zip(keys, local.chat(CONVS, max_new_tokens=MAX_TOKENS)))
    path = tmp_path/'answers.jsonl'
    (p, url), server = servers[1], servers[0][1]
    api, err = APIBackend('tiny', url, concurrency=1, retries=0), {}
    def run():
        try: api.chat_jsonl(keys, CONVS, path, max_new_tokens=MAX_TOKENS)
        except Exception as e: err['e'] = e
    t = threading.Thread(target=run); t.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and (not path.exists() or path.read_text().count('\n') < 3): time.sleep(0.005)
    _stop(p, signal.SIGKILL)                       # the server dies mid-run
    t.join(60)
    assert isinstance(err.get('e'), ConnectionError) and 'no answer after 1 attempt(s)' in str(err['e']), err
    before = read_jsonl_answers(path, repair=False)
    assert 3 <= len(before) < N and all(expected[k] == v for k, v in before.items()), len(before)
    with open(path, 'a') as f: f.write('{"key": "user-9", "te')     # and a client killed mid-write leaves half a line
    api2 = APIBackend('tiny', server, concurrency=4, retries=0)      # rerun against a live server
    assert api2.chat_jsonl(keys, CONVS, path, max_new_tokens=MAX_TOKENS) == expected
    assert api2.usage['requests'] == N - len(before)                  # only the missing keys were asked
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert sorted(r['key'] for r in lines) == sorted(keys)            # every key exactly once
    assert api2.chat_jsonl(keys, CONVS, path, max_new_tokens=MAX_TOKENS) == expected and api2.usage['requests'] == N - len(before)

def test_a_dead_port_fails_clearly_after_the_retries():
    api = APIBackend('tiny', f'http://127.0.0.1:{free_port()}', retries=2, backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=r'no answer after 3 attempt\(s\); last error: ConnectError'): api.chat(CONVS[:2])
    assert time.monotonic() - t0 < 10

def test_llm_recommender_over_the_api(server, local):
    "BIGRec grounding through the served model ranks exactly as through the in-process model (an API model is a Recommender)"
    from reclm_nb.sources import load_ml100k
    from reclm_nb.split import leave_one_out
    from reclm_nb.tasks import unique_titles
    from reclm_nb.ground import EmbeddingGrounder
    from reclm_nb.embed import load_embedder
    from reclm_nb.llmrec import LLMRecommender
    data = load_ml100k().head_users(6); sp = leave_one_out(data, window=50)
    titles = unique_titles(data.items); titles = {i: titles[i] for i in sp.item_ids}
    grounder = EmbeddingGrounder(list(titles), list(titles.values()), load_embedder('minilm-l6-v2'))
    kw = dict(grounder=grounder, max_new_tokens=MAX_TOKENS, progress=False)
    remote = LLMRecommender(APIBackend(base_url=server, concurrency=3), titles, 'ground', **kw)
    inproc = LLMRecommender(local, titles, 'ground', **kw)
    hs = sp.test.histories
    text = lambda rec: [r['text'] for r in rec.generate('text', hs, sp.test.users)]
    assert text(remote) == text(inproc)
    got = remote.recommend(hs, k=10)
    assert got == inproc.recommend(hs, k=10) and all(len(r) == 10 and not set(r) & set(h) for r, h in zip(got, hs))
    assert 0 <= remote.validity <= 1

def test_reclmgen_lists_from_an_api_model(server, tmp_path):
    "RecLM-gen's list evaluation of an API model ('api:NAME' entry) equals the same model in process, row for row"
    from conftest import cli
    env = {**os.environ, 'OPENAI_BASE_URL': server + '/v1'}
    sets = ['run.stages=[evaluate]', 'cf.models=[pop]', 'tasks.teacher=pop', 'eval.llm_models=[zero-shot, api:tiny]',
            'eval.llm_methods=[list]', 'eval.list_max_new_tokens=12', 'tasks.test=[seqrec_test, control-_test, item_count_test]', 'tasks.test_users=3']
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', *[x for s in sets for x in ('--set', s)], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    gen = tmp_path/'smoke'/'generate'
    read = lambda m: {(x['task'], x['user_id']): x for x in map(json.loads, (gen/m/'list.jsonl').read_text().splitlines())}
    local, api = read('zero-shot'), read('api_tiny')
    assert len(api) == 9 and api.keys() == local.keys()
    assert all(api[k]['text'] == local[k]['text'] and api[k]['example'] == local[k]['example'] for k in api)
    assert json.loads((gen/'api_tiny'/'list.meta.json').read_text())['backend'] == 'api'
    report = (tmp_path/'smoke'/'report.md').read_text()
    table = report.split('## RecLM-gen tasks (test)')[1]
    rows = {l.split('|')[1].strip(): l.split('|')[2:] for l in table.splitlines() if l.startswith('| ') and not l.startswith('| model')}
    assert rows['zero-shot'] == rows['api:tiny']
