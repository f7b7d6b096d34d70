"End to end: the `reclm-nb` command runs the smoke recipe, resumes after a kill, and rejects bad input cleanly."
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
from conftest import cli, BIN

def test_smoke_run_produces_report(tmp_path):
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path/'smoke'
    report = (run/'report.md').read_text()
    assert 'Protocol: ml-100k | split loo/test | candidates full | K 5,10,20 | 100 users' in report
    assert '| pop |' in report and 'NDCG@10' in report
    assert (run/'results.png').read_bytes()[:4] == b'\x89PNG'
    for nb in ('02_data', '03_split', '05_cf', '08_tasks', '10_sft', '15_evaluate'):
        assert (run/'notebooks'/f'{nb}.ipynb').exists(), nb
    # the LLM stages: tasks drawn from the teacher, the tiny model fine-tuned, merged, its loss curve in the report
    info = json.loads((run/'tasks'/'info.json').read_text())
    assert info['teacher'] == 'sasrec'
    sft = json.loads((run/'sft'/'metrics.json').read_text())
    assert sft['model'] == 'tiny' and sft['steps'] == 4 and sft['tokens_per_second'] > 0
    assert (run/'sft'/'model'/'config.json').exists() and (run/'sft'/'adapter'/'adapter_config.json').exists()
    assert '## Supervised fine-tuning' in report and (run/'sft_loss.png').read_bytes()[:4] == b'\x89PNG'
    res = pd.read_parquet(run/'evaluate'/'results.parquet')
    test10 = res[(res.metric == 'NDCG') & (res.k == 10) & (res.table == 'loo/test')].set_index('method').value
    assert list(test10.index) == ['pop', 'sasrec', 'biasmf', 'lightgcn', 'ncf']  # the recipe's models, in its order
    assert 0 < test10['pop'] < 1 and test10.between(0, 1).all()
    # the LLM comparison: the cf models again and every LLM x method, on the same seeded 8 test users
    llm = res[res.table == 'loo/test (8 users)']
    methods = [f'{w} {m}' for w in ('zero-shot', 'sft') for m in ('beam', 'beam-trie', 'ground', 'ground+pop', 'ground+cf')]
    assert list(dict.fromkeys(llm.method)) == ['pop', 'sasrec', 'biasmf', 'lightgcn', 'ncf', *methods]
    assert (llm.n_users == 8).all() and llm[llm.metric == 'NDCG'].value.between(0, 1).all()
    validity = llm[llm.metric == 'validity'].set_index('method').value
    assert list(validity.index) == methods and validity['sft beam'] == validity['sft beam-trie'] == 1.0 and validity.between(0, 1).all()
    assert (llm[llm.metric == 'seconds_per_user'].value > 0).all()
    assert 'Protocol: ml-100k | split loo/test | candidates full | K 5,10,20 | 8 users' in report
    assert 'top-K lists only' in report and '## LLM recommenders' in report
    gam = json.loads((run/'evaluate'/'llm.json').read_text())['gamma']
    assert set(gam) == {'zero-shot ground+pop', 'zero-shot ground+cf', 'sft ground+pop', 'sft ground+cf'}
    assert all(g['gamma'] in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0) for g in gam.values())
    for m in ('sasrec', 'biasmf', 'lightgcn', 'ncf'):
        assert (run/'cf'/m/'weights.safetensors').exists() and (run/'cf'/m/'fit_info.json').exists(), m
    assert (run/'training.png').read_bytes()[:4] == b'\x89PNG'
    assert 'Protocol:' in r.stdout  # the CLI prints the report, protocol first
    # a second run finds every stage done with the same settings and only rewrites the report
    t0 = time.time()
    r2 = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress')
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stderr.count('done with these settings, skipping') == 6
    assert 'executing' not in r2.stderr
    # changing an evaluation setting re-runs the evaluate stage only
    r3 = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', '--set', 'eval.ks=[1,10]')
    assert r3.returncode == 0, r3.stderr[-3000:]
    assert 'stage evaluate: executing' in r3.stderr and 'stage data: executing' not in r3.stderr
    assert 'K 1,10' in (run/'report.md').read_text()

def test_resume_after_kill(tmp_path):
    "Kill a run after its first stage; the same command resumes at the stage that did not finish"
    exe = BIN/'reclm-nb'
    fast = ['--set', 'run.stages=[data,split,cf,evaluate]', '--set', 'eval.llm_models=[]']  # the LLM stages resume on their own (tests/test_sft.py)
    p = subprocess.Popen([str(exe), 'run', 'smoke', '--out', str(tmp_path), '--no-progress', *fast], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    done = tmp_path/'smoke'/'data'/'done.json'
    t0 = time.time()
    while not done.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.2)
    assert done.exists(), 'the data stage never finished'
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert not (tmp_path/'smoke'/'report.md').exists()
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', *fast)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'stage data: done with these settings, skipping' in r.stderr
    assert 'stage evaluate: executing' in r.stderr
    assert (tmp_path/'smoke'/'report.md').exists()

def test_bad_input_is_a_clear_error(tmp_path):
    r = cli('run', 'no-such-recipe', '--out', str(tmp_path))
    assert r.returncode == 2 and "unknown recipe 'no-such-recipe'" in r.stderr and 'Traceback' not in r.stderr
    r = cli('run', 'smoke', '--out', str(tmp_path), '--set', 'data.max_userz=3')
    assert r.returncode == 2 and "unknown key 'max_userz'" in r.stderr
    r = cli('run', 'smoke', '--out', str(tmp_path), '--set', 'split.candidates=sample:5', '--no-progress')
    assert r.returncode == 2 and 'sampled:N' in r.stderr
    assert not (tmp_path/'smoke'/'split'/'done.json').exists()  # the failing stage left no completion marker
    bad = tmp_path/'bad.yaml'; bad.write_text('data: [1, 2')
    r = cli('run', str(bad), '--out', str(tmp_path))
    assert r.returncode == 2 and 'bad.yaml' in r.stderr

def test_recipe_show_round_trips(tmp_path):
    r = cli('recipe', 'show', 'smoke')
    assert r.returncode == 0 and 'max_users: 100' in r.stdout
    assert '\n  - sft\n' in r.stdout and 'model: tiny' in r.stdout
    y = tmp_path/'mine.yaml'; y.write_text(r.stdout.replace('max_users: 100', 'max_users: 30').replace('name: smoke', 'name: mine')
                                           .replace('  - tasks\n', '').replace('  - sft\n', ''))
    r = cli('run', str(y), '--out', str(tmp_path), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    assert '| 30 users' in (tmp_path/'mine'/'report.md').read_text()

def test_sampled_protocol_scores_llm_candidates(tmp_path):
    "Under sampled:N every LLM re-ranks each user's candidates by likelihood, under both normalisations"
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', '--set', 'run.stages=[data,split,cf,evaluate]',
            '--set', 'split.candidates=sampled:19', '--set', 'cf.models=[pop]', '--set', 'eval.llm_models=[zero-shot]',
            '--set', 'eval.llm_methods=[beam,beam-trie]', '--set', 'eval.llm_users=4')
    assert r.returncode == 0, r.stderr[-3000:]
    res = pd.read_parquet(tmp_path/'smoke'/'evaluate'/'results.parquet')
    llm = res[res.table == 'loo/test (4 users)']
    assert list(dict.fromkeys(llm.method)) == ['pop', 'zero-shot score', 'zero-shot score-trie']
    assert (llm.candidates == 'sampled:19').all() and (llm.n_users == 4).all()
    assert llm[llm.metric == 'HR'].value.between(0, 1).all()
    hr20 = llm[(llm.metric == 'HR') & (llm.k == 20)].set_index('method').value
    assert (hr20 == 1.0).all()   # the target and 19 negatives, K=20: every ranking holds the target
    assert 'candidates sampled:19' in (tmp_path/'smoke'/'report.md').read_text()
