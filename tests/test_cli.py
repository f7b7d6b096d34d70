"End to end: the `reclm-nb` command runs the smoke recipe, resumes after a kill, never reports stale results, and rejects bad input cleanly."
import json, os, re, signal, subprocess, time

import pandas as pd
import pytest
from conftest import cli, BIN

LLM_TABLE = 'loo/test · LLM comparison (8 users)'

MODELS = ('zero-shot', 'sft', 'ppo', 'grpo')

@pytest.mark.slow
def test_smoke_run_produces_report(tmp_path):
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path/'smoke'
    report = (run/'report.md').read_text()
    assert 'Protocol: ml-100k | split loo/test | candidates full | K 5,10,20 | 100 users' in report
    assert '| pop |' in report and 'NDCG@10' in report
    assert (run/'results.png').read_bytes()[:4] == b'\x89PNG'
    for nb in ('02a_sources', '03_split', '05_cf', '09b_index_stage', '12e_user_texts', '08b_tasks_stage', '10_sft', '13b_rl_stage', '12b_generate', '15_evaluate'):
        assert (run/'notebooks'/f'{nb}.ipynb').exists(), nb
    # the LLM stages: tasks drawn from the teacher, the tiny model fine-tuned, merged, its loss curve in the report
    info = json.loads((run/'tasks'/'info.json').read_text())
    assert info['teacher'] == 'sasrec'
    sft = json.loads((run/'sft'/'metrics.json').read_text())
    assert sft['model'] == 'tiny' and sft['steps'] == 4 and sft['tokens_per_second'] > 0
    assert (run/'sft'/'model'/'config.json').exists() and (run/'sft'/'adapter'/'adapter_config.json').exists()
    assert '## Supervised fine-tuning' in report and (run/'sft_loss.png').read_bytes()[:4] == b'\x89PNG'
    # the generations artifact: one record per user and kind, for each model
    for which in MODELS:
        for kind, n in (('beam', 8), ('beam-trie', 8), ('text', 16), ('list', 32)):   # list: 8 RecLM-gen test tasks x 4 users   # text: 8 test users + 8 validation users for gamma
            lines = (run/'generate'/which/f'{kind}.jsonl').read_text().splitlines()
            assert len(lines) == n, (which, kind, len(lines))
    rec = json.loads((run/'generate'/'sft'/'text.jsonl').read_text().splitlines()[0])
    assert {'key', 'user', 'history', 'text', 'seconds', 'part'} <= set(rec)
    res = pd.read_parquet(run/'evaluate'/'results.parquet')
    test10 = res[(res.metric == 'NDCG') & (res.k == 10) & (res.table == 'loo/test')].set_index('method').value
    assert list(test10.index) == ['pop', 'sasrec', 'biasmf', 'lightgcn', 'ncf']  # the recipe's models, in its order
    assert 0 < test10['pop'] < 1 and test10.between(0, 1).all()
    # the LLM comparison: the cf models again and every LLM x method, on the same seeded 8 test users
    llm = res[res.table == LLM_TABLE]
    methods = [f'{w} {m}' for w in MODELS for m in ('beam', 'beam-trie', 'beam+tf', 'ground', 'ground+pop', 'ground+cf')]
    assert list(dict.fromkeys(llm.method)) == ['pop', 'sasrec', 'biasmf', 'lightgcn', 'ncf', *methods]
    assert (llm.n_users == 8).all() and llm[llm.metric == 'NDCG'].value.between(0, 1).all()
    validity = llm[llm.metric == 'validity'].set_index('method').value
    assert list(validity.index) == methods and validity['sft beam'] == validity['sft beam-trie'] == 1.0 and validity.between(0, 1).all()
    spu = llm[llm.metric == 'seconds_per_user'].set_index('method').value
    assert (spu > 0).all()
    gen_cost = {w: sum(json.loads(l)['seconds'] for l in (run/'generate'/w/'text.jsonl').read_text().splitlines()[:8]) / 8 for w in MODELS}
    for w in MODELS:   # the shared texts are charged to every grounding method that ranks from them
        for m in ('ground', 'ground+pop', 'ground+cf'): assert spu[f'{w} {m}'] >= 0.5 * gen_cost[w], (w, m, spu[f'{w} {m}'], gen_cost[w])
    assert f'## {LLM_TABLE}' in report and 'dtype float32' in report
    llm_dtype = json.loads((run/'evaluate'/'llm.json').read_text())['dtype']   # bf16 where the CPU runs it natively, else fp32
    if llm_dtype != 'float32': assert f'| dtype float32 for pop, sasrec, biasmf, lightgcn, ncf; {llm_dtype} for zero-shot beam' in report
    else: assert '| K 5,10,20 | 8 users | history window 50 | history masked | seed 0 | dtype float32 |' in report
    assert 'top-K lists only' in report and '## LLM recommenders' in report
    gam = json.loads((run/'evaluate'/'llm.json').read_text())['gamma']
    assert set(gam) == {f'{w} ground+{p}' for w in MODELS for p in ('pop', 'cf')}
    # RecLM-gen: PPO and GRPO from the SFT model, their curve, and the RecLM-gen table with a row per model
    rl = json.loads((run/'rl'/'info.json').read_text())
    assert rl['ppo']['steps'] == 2 and rl['grpo']['steps'] == 2 and (run/'rl'/'ppo'/'model'/'config.json').exists()
    assert '## RecLM-gen tasks (test)' in report and '## Reinforcement learning' in report and (run/'rl_curve.png').read_bytes()[:4] == b'\x89PNG'
    table = report.split('## RecLM-gen tasks (test)')[1].split('##')[0]
    assert all(f'| {m}' in table for m in ('zero-shot', 'SFT', 'SFT+PPO', 'SFT+GRPO')) and 'seqrec: Empty' in table and 'control-: Empty' in table   # the random tiny model's answers hold no line
    lists = pd.read_parquet(run/'evaluate'/'lists.parquet')
    assert set(lists.model) == set(MODELS) and lists[lists.metric.isin(['Count', 'Empty'])].groupby(['model', 'task']).value.sum().eq(4).all()
    assert all(g['gamma'] in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0) for g in gam.values())
    # LC-Rec: the index stage's collision-free codes, the IDs as new tokens, beams for every test user x template, LC-Rec's table
    assert json.loads((run/'index'/'done.json').read_text())['summary']['collision_rate'] == 0.0 and (run/'index'/'index.json').exists()
    assert len(json.loads((run/'tasks'/'new_tokens.json').read_text())) > 0
    for which in MODELS: assert len((run/'generate'/which/'lcrec.jsonl').read_text().splitlines()) == 4 * 6   # 4 test users x 6 templates
    assert '## LC-Rec (test)' in report and '## Item index' in report and (run/'index_training.png').read_bytes()[:4] == b'\x89PNG'
    d3 = json.loads((run/'evaluate'/'llm.json').read_text())['d3']
    assert set(d3) == {f'{w} beam+tf' for w in MODELS} and all(g['g'] in (1.0, 0.5) for g in d3.values())
    for m in ('sasrec', 'biasmf', 'lightgcn', 'ncf'):
        assert (run/'cf'/m/'weights.safetensors').exists() and (run/'cf'/m/'fit_info.json').exists(), m
    assert (run/'training.png').read_bytes()[:4] == b'\x89PNG'
    assert 'Protocol:' in r.stdout  # the CLI prints the report, protocol first
    assert 'stage cf: executing 05_cf.ipynb (not run yet)' in r.stderr and 'cf: trained sasrec' in r.stderr   # stage logs reach the terminal
    # a second run finds every stage up to date and only rewrites the report
    r2 = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress')
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stderr.count('up to date, skipping') == 10, r2.stderr[-3000:]   # data split cf index texts tasks sft rl generate evaluate
    assert 'executing' not in r2.stderr
    # changing an evaluation setting re-runs the evaluate stage only: the LLM answers come from the generations
    r3 = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', '--set', 'eval.gammas=[0.0,2.0]')
    assert r3.returncode == 0, r3.stderr[-3000:]
    assert 'stage evaluate: executing' in r3.stderr and r3.stderr.count('executing') == 1
    assert 'loading ' not in r3.stderr
    assert '(gamma: NDCG@10 = 0: ' in (run/'report.md').read_text() and ', 4: ' not in (run/'report.md').read_text()
    # a decoding setting re-runs the generations it shapes (here the beams: K now asks for fewer), and the evaluation
    r4 = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', '--set', 'eval.gammas=[0.0,2.0]', '--set', 'eval.ks=[1,10]')
    assert r4.returncode == 0, r4.stderr[-3000:]
    assert 'stage generate: executing 12b_generate.ipynb (changed: config eval.ks)' in r4.stderr
    assert 'text: 16 records (0 new)' in r4.stderr             # the free texts do not depend on K: kept
    assert 'K 1,10' in (run/'report.md').read_text()

FAST = ['--set', 'run.stages=[evaluate]', '--set', 'eval.llm_models=[]']

def test_resume_after_kill(tmp_path):
    "Kill a run after its first stage; the same command resumes at the stage that did not finish"
    exe = BIN/'reclm-nb'
    p = subprocess.Popen([str(exe), 'run', 'smoke', '--out', str(tmp_path), '--no-progress', *FAST], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    done = tmp_path/'smoke'/'data'/'done.json'
    t0 = time.time()
    while not done.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.2)
    assert done.exists(), 'the data stage never finished'
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert not (tmp_path/'smoke'/'report.md').exists()
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', *FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'stage data: up to date, skipping' in r.stderr
    assert 'stage evaluate: executing' in r.stderr
    assert (tmp_path/'smoke'/'report.md').exists()

def _weights(run, m): return (run/'cf'/m/'weights.safetensors').read_bytes()

def test_no_stale_results(tmp_path):
    "Whatever a stage reads changes, it re-runs: the split window retrains the CF models; --force retrains; a dropped model leaves the report"
    base = ['run', 'smoke', '--out', str(tmp_path), '--no-progress', *FAST, '--set', 'cf.models=[pop, sasrec]']
    r = cli(*base)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path/'smoke'
    w50 = _weights(run, 'sasrec')
    r = cli(*base, '--set', 'split.window=10')          # the same item count, other training windows
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'stage split: executing' in r.stderr and 'cf: trained sasrec' in r.stderr
    assert _weights(run, 'sasrec') != w50
    assert 'history window 10' in (run/'report.md').read_text()
    w10 = _weights(run, 'sasrec')
    r = cli(*base, '--set', 'split.window=10', '--force')  # from scratch: every stage again, the models retrained
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'forced: from scratch' in r.stderr and 'cf: trained sasrec' in r.stderr and 'cf: trained pop' in r.stderr
    assert r.stderr.count('executing') == 4 and _weights(run, 'sasrec') == w10    # the same seed: the same model again
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', *FAST, '--set', 'cf.models=[pop]', '--set', 'split.window=10')
    assert r.returncode == 0, r.stderr[-3000:]
    report = (run/'report.md').read_text()
    assert '| pop |' in report and 'sasrec' not in report          # the dropped model is gone from the report

def test_force_retrains_sft_from_scratch(tmp_path):
    "--force deletes the SFT checkpoints: the model is trained again from step 0, not resumed from the last checkpoint"
    args = ['run', 'smoke', '--out', str(tmp_path), '--no-progress', '--set', 'run.stages=[sft]', '--set', 'cf.models=[pop, sasrec]']
    r = cli(*args); assert r.returncode == 0, r.stderr[-3000:]
    ck = tmp_path/'smoke'/'sft'/'checkpoints'
    assert any(ck.glob('checkpoint-*'))
    r = cli(*args, '--force'); assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path/'smoke'/'sft'/'metrics.json').read_text())
    assert m['resumed_from'] is None and m['steps'] == 4 and 'resuming from' not in r.stderr
    assert 'forced: from scratch' in r.stderr and 'cf: trained sasrec' in r.stderr

def test_report_refuses_stale_results(tmp_path):
    "`reclm-nb report` rewrites a report only from an evaluation that is up to date with the run's config"
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', *FAST, '--set', 'cf.models=[pop]')
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path/'smoke'
    r = cli('report', str(run)); assert r.returncode == 0, r.stderr[-2000:]
    (run/'config.yaml').write_text((run/'config.yaml').read_text().replace('window: 50', 'window: 10'))
    r = cli('report', str(run))
    assert r.returncode == 2 and 'the evaluate stage is not up to date' in r.stderr
    r = cli('report', str(tmp_path/'nope'))
    assert r.returncode == 2 and 'not a run folder' in r.stderr and not (tmp_path/'nope').exists()

def test_replaced_data_file_reruns_downstream(tmp_path):
    "Replacing the file behind data.path invalidates the data stage and everything after it"
    folder = tmp_path/'toy'; folder.mkdir()
    inter = 'user_id:token\titem_id:token\ttimestamp:float\n' + ''.join(f'{u}\t{i}\t{t}\n' for u in range(1, 6) for t, i in enumerate(range(1 + u % 2, 8)))
    (folder/'toy.inter').write_text(inter)
    (folder/'toy.item').write_text('item_id:token\ttitle:token_seq\n' + ''.join(f'{i}\tItem {i}\n' for i in range(1, 9)))
    args = ['run', 'smoke', '--out', str(tmp_path/'runs'), '--no-progress', '--set', 'run.stages=[split]', '--set', 'data.source=recbole',
            '--set', f'data.path={folder}', '--set', 'data.max_users=null']
    r = cli(*args); assert r.returncode == 0, r.stderr[-3000:]
    r = cli(*args); assert r.returncode == 0 and r.stderr.count('up to date, skipping') == 2, r.stderr[-3000:]
    (folder/'toy.inter').write_text(inter.replace('\t3\t', '\t8\t'))   # the same file name, other interactions
    r = cli(*args); assert r.returncode == 0, r.stderr[-3000:]
    assert 'stage data: executing 02a_sources.ipynb (changed: outside)' in r.stderr and 'stage split: executing' in r.stderr

def test_config_types_are_checked_before_any_stage(tmp_path):
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', '--set', 'sft.lr=abc')
    assert r.returncode == 2 and "sft.lr = 'abc': expected float" in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'smoke'/'data'/'done.json').exists()
    r = cli('run', 'smoke', '--out', str(tmp_path), '--set', 'run.stages=data')
    assert r.returncode == 2 and "run.stages = 'data': expected list[str]" in r.stderr
    r = cli('run', 'smoke', '--out', str(tmp_path), '--set', 'data.source=movielens')
    assert r.returncode == 2 and "data.source = 'movielens': not a known source" in r.stderr
    r = cli('run', 'smoke', '--out', str(tmp_path), '--set', 'cf.params.sasrec={epochs: many}')
    assert r.returncode == 2 and "cf.params.sasrec.epochs = 'many': expected int" in r.stderr
    assert not (tmp_path/'smoke'/'data').exists()
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', *FAST, '--set', 'cf.models=[pop]', '--set', 'sft.lr=1e-4')   # YAML 1.1 reads a string
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'lr: 0.0001' in (tmp_path/'smoke'/'config.yaml').read_text()

def test_bad_input_is_a_clear_error(tmp_path):
    r = cli('run', 'no-such-recipe', '--out', str(tmp_path))
    assert r.returncode == 2 and "unknown recipe 'no-such-recipe'" in r.stderr and 'Traceback' not in r.stderr
    r = cli('run', 'smoke', '--out', str(tmp_path), '--set', 'data.max_userz=3')
    assert r.returncode == 2 and "unknown key 'max_userz'" in r.stderr
    r = cli('run', 'smoke', '--out', str(tmp_path), '--set', 'split.candidates=sample:5', '--no-progress')
    assert r.returncode == 2 and 'sampled:N' in r.stderr
    assert not (tmp_path/'smoke'/'split'/'done.json').exists()  # no stage ran
    bad = tmp_path/'bad.yaml'; bad.write_text('data: [1, 2')
    r = cli('run', str(bad), '--out', str(tmp_path))
    assert r.returncode == 2 and 'bad.yaml' in r.stderr
    r = cli('run', '--help')
    assert r.returncode == 0 and 'from scratch' in r.stdout

def test_recipe_show_round_trips(tmp_path):
    r = cli('recipe', 'show', 'smoke')
    assert r.returncode == 0 and 'max_users: 100' in r.stdout
    assert '\n  - sft\n' in r.stdout and 'model: tiny' in r.stdout
    y = tmp_path/'mine.yaml'; y.write_text(r.stdout.replace('max_users: 100', 'max_users: 30').replace('name: smoke', 'name: mine')
                                           .replace('  - tasks\n', '').replace('  - sft\n', '').replace('  - generate\n', '')
                                           .replace("  llm_models:\n  - zero-shot\n  - sft\n", '  llm_models: []\n'))
    r = cli('run', str(y), '--out', str(tmp_path), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    assert '| 30 users' in (tmp_path/'mine'/'report.md').read_text()

@pytest.mark.slow
def test_llms_on_every_user_write_their_report(tmp_path):
    "An evaluation over every test user (what a paper needs) keeps its own table and writes its report"
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', '--set', 'eval.llm_users=null', '--set', 'eval.llm_models=[zero-shot]',
            '--set', 'eval.llm_methods=[beam-trie,ground+cf]', '--set', 'cf.models=[pop,sasrec]', '--set', 'data.max_users=40')
    assert r.returncode == 0, r.stderr[-3000:]
    report = (tmp_path/'smoke'/'report.md').read_text()
    assert '## loo/test · LLM comparison (40 users)' in report and 'could not be written' not in report
    assert report.count('| sasrec |') == 3   # valid, test, and the comparison table
    assert (tmp_path/'smoke'/'results.png').exists()

def test_sampled_protocol_scores_llm_candidates(tmp_path):
    "Under sampled:N every LLM re-ranks each user's candidates by likelihood, under both normalisations"
    r = cli('run', 'smoke', '--out', str(tmp_path), '--no-progress', '--set', 'run.stages=[evaluate]',
            '--set', 'split.candidates=sampled:19', '--set', 'cf.models=[pop]', '--set', 'eval.llm_models=[zero-shot]',
            '--set', 'eval.llm_methods=[beam,beam-trie]', '--set', 'eval.llm_users=4')
    assert r.returncode == 0, r.stderr[-3000:]
    res = pd.read_parquet(tmp_path/'smoke'/'evaluate'/'results.parquet')
    llm = res[res.table == 'loo/test · LLM comparison (4 users)']
    assert list(dict.fromkeys(llm.method)) == ['pop', 'zero-shot score', 'zero-shot score-trie']
    assert (llm.candidates == 'sampled:19').all() and (llm.n_users == 4).all()
    assert llm[llm.metric == 'HR'].value.between(0, 1).all()
    hr20 = llm[(llm.metric == 'HR') & (llm.k == 20)].set_index('method').value
    assert (hr20 == 1.0).all()   # the target and 19 negatives, K=20: every ranking holds the target
    assert 'candidates sampled:19' in (tmp_path/'smoke'/'report.md').read_text()
    planned = re.search(r'run smoke: stages (\[[^\]]*\])', r.stderr).group(1)
    assert planned == "['data', 'split', 'cf', 'generate', 'evaluate']", planned   # only what the evaluation needs
