"RL: RecLM-gen's rewards on hand-computed cases, reward placement by character spans, the rl stage end to end, resume after a kill, 2 processes, GPU."
import math, os, shutil, signal, subprocess, sys, time

import numpy as np
import pytest
import torch

from reclm_nb.core import recipe_config, save_config, load_json
from reclm_nb.stages import RunDir, run_stage
from reclm_nb.rl import (RewardContext, RewardResult, list_reward, list_lines, score_completions, token_rewards, action_char_ends,
                         idcg, rank_score, masked_whiten, gae)
from reclm_nb.rl_stage import check_rl, rl_writes

EX = {'task': 'rl_seqrec', 'history': [], 'target': '', 'n': 4, 'control': '', 'category': '', 'rate_kind': '', 'rate_count': -1, 'candidates': []}

def test_rate_lp_list_by_hand():
    "LP (at most c = 1 of n = 4 in C): in, in, out, out; ranks 0..3, no target"
    ex = dict(EX, task='rl_rate_lp', rate_kind='LP', rate_count=1, category='C')
    r = list_reward(['a', 'b', 'x', 'y'], [0, 1, 2, 3], ex, {'a', 'b'}, alpha=0.5)
    # item 1: out 0 > 3? no; in C, in=1 < 1? no -> 0.  item 2: in=2 -> 0.  items 3, 4: not in C -> 1
    assert r.task_scores == [0.0, 0.0, 1.0, 1.0]
    ranks = [1 / math.log2(k + 3) for k in range(4)]
    assert r.item_rewards == pytest.approx([0.5 * ranks[0], 0.5 * ranks[1], 0.5 * ranks[2] + 0.5, 0.5 * ranks[3] + 0.5])
    assert r.task_score == pytest.approx(1 / 2)   # in = 2, c = 1: 1/(|2-1|+1)
    rp = sum(s / math.log2(i + 2) for i, s in enumerate(ranks)) / idcg(4)
    assert r.list_reward == pytest.approx(0.5 * rp + 0.25)

def test_minus_c_and_invalid_items_by_hand():
    "-C with a repeat, a history item and a line past n: each -1, undiscounted, in the rank part"
    ex = dict(EX, task='rl_control-', control='-', category='C', history=['h'], n=3, target='t')
    r = list_reward(['t', 't', 'h', 'z'], [5, 5, 0, 1], ex, {'q'}, alpha=0.5)
    assert r.rank_scores == [1.0, -1.0, -1.0, -1.0]
    assert r.item_rewards == [0.5 * 1.0 + 0.5 * 1.0, -1.0, -1.0, -1.0]   # the target is outside C: task 1
    assert (r.n_in, r.n_out) == (0, 1)
    assert r.task_score == pytest.approx(1 / 3)        # 1/(n - out + 1) = 1/(3 - 1 + 1)
    assert r.rank_part == pytest.approx((1.0 - 3) / idcg(3))

def test_seqrec_target_beyond_n_counts_as_recleml_gen_does():
    r = list_reward(['a', 'b', 't'], [0, 1, 2], dict(EX, n=2, target='t'))
    assert r.rank_scores[-1] == -1.0 and r.task_score == pytest.approx(1 / math.log2(4))

def test_reranking_ranks_within_the_list():
    from reclm_nb.cf import Popularity
    p = Popularity(['a', 'b', 'c', 'd']); p.counts = np.array([4., 3., 2., 1.])
    ctx = RewardContext({'A': 'a', 'B': 'b', 'C': 'c', 'D': 'd'}, {}, p)
    res = score_completions(['D\nC\nA'], [dict(EX, task='seqranking_valid', n=3, candidates=['c', 'd', 'b'])], ctx)[0]
    assert res.items == ['d', 'c', 'a']
    # 'a' is no candidate (-1); as in RecLM-gen, each teacher rank becomes the rank among the listed items: a 0, c 1, d 2
    assert res.item_rewards == [rank_score(2), rank_score(1), -1.0]

def test_fine_grained_rewards_land_on_each_titles_last_token():
    "The token completing each title, from decoded prefixes, agrees with the tokenizer's own offsets"
    from reclm_nb.llm import load_tokenizer
    tok = load_tokenizer('tiny')
    text = '1. Heat (1995)\n2. Babe: Pig in the City (1998)\n3. Up'
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc.input_ids + [tok.eos_token_id]
    ends = action_char_ends(tok, ids)
    assert ends[-1] == len(text)
    spans = [(s, e) for _, s, e in list_lines(text)]
    rr = RewardResult([], [], [], [1.0, 2.0, 3.0], 0.1, 0.0, 0.0, spans)
    r = token_rewards(len(ids), ends, rr, reward_scale=10, fine_grain=True)
    want = [next(k for k, (_, oe) in enumerate(enc.offset_mapping) if oe >= e) for _, e in spans]
    got = [int(k) for k in torch.nonzero(r[:-1]).flatten()]
    assert got == want and r[-1] == pytest.approx(1.0) and r[want].tolist() == [1.0, 2.0, 3.0]

def test_whitening_and_gae_shapes():
    x, m = torch.randn(3, 7), torch.rand(3, 7) > 0.3
    w = masked_whiten(x, m)
    assert abs(float(w[m].mean())) < 1e-5 and float(w[m].std()) == pytest.approx(1.0, abs=1e-4)
    adv, ret = gae(torch.zeros(3, 7), torch.ones(3, 7), m)
    assert adv.shape == ret.shape == (3, 7) and bool((adv[~m] == 0).all())

def test_check_rl_and_writes():
    cfg = recipe_config('smoke', ['tasks.rl_train={rl_seqrec: 4}'])
    check_rl(cfg)
    from reclm_nb.core import ConfigError
    with pytest.raises(ConfigError, match='rl.rollouts'): check_rl(recipe_config('smoke', ['tasks.rl_train={rl_seqrec: 4}', 'rl.rollouts=[]']))
    with pytest.raises(ConfigError, match="unknown train task 'rl_x'"): check_rl(recipe_config('smoke', ['tasks.rl_train={rl_x: 4}']))
    assert 'ppo/model/*' in rl_writes(cfg) and 'ppo/curve.json' in rl_writes(cfg)

# ---------------------------------------------------------------- the stage on a smoke run (tiny model)

RL_OVERRIDES = ['llm.dtype=fp32', 'run.threads=1', 'sft.max_steps=2', 'tasks.rl_train={rl_seqrec: 8, "rl_control+": 4, rl_rate_mp: 4}',
                'tasks.rl_valid=[seqrec_valid, "control+_valid", rate_mp30_valid]', 'tasks.valid_users=4', 'tasks.rl_epochs=1',
                'rl.batch_size=2', 'rl.max_new_tokens=16', 'rl.eval_steps=2', 'rl.eval_examples=4', 'rl.save_steps=2', 'rl.lr=1e-3',
                'rl.fine_grain_reward=true', 'rl.log_examples=1', 'rl.algos=[ppo]']

@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    "A smoke run with data, split, cf, tasks (RL prompts included) and a 2-step SFT model"
    root = tmp_path_factory.mktemp('rl')/'base'
    cfg = recipe_config('smoke', RL_OVERRIDES)
    run_stage('sft', cfg, RunDir(root))
    return root

def _copy(prepared, dst):
    shutil.copytree(prepared, dst); return RunDir(dst)

def _curve(run): return [{k: r[k] for k in ('step', 'reward', 'kl', 'value_loss', 'val_reward')} for r in load_json(run.root/'rl'/'ppo'/'curve.json')]

def test_rl_stage_end_to_end(prepared, tmp_path):
    run = _copy(prepared, tmp_path/'run')
    cfg = recipe_config('smoke', RL_OVERRIDES + ['rl.max_steps=3'])
    s = run_stage('rl', cfg, run)
    assert s['ppo']['steps'] == 3 and s['ppo']['stopped_by_budget'] is False
    out = run.root/'rl'/'ppo'
    assert (out/'model'/'config.json').exists() and (out/'adapter'/'actor'/'adapter_config.json').exists()
    assert (out/'adapter'/'critic'/'value_head.safetensors').exists()
    curve = load_json(out/'curve.json')
    assert [r['step'] for r in curve] == [0, 1, 2, 3] and all(np.isfinite(r['reward']) for r in curve[1:])
    m = load_json(out/'metrics.json')
    assert set(m['best_validation']['tasks']) == {'seqrec_valid', 'control+_valid', 'rate_mp30_valid'}
    # the merged model loads like sft/model
    from reclm_nb.llm import load_model
    model, tok = load_model(str(out/'model'), 'fp32', 'cpu')
    assert model.config.hidden_size == 64
    # a second run with the same settings is up to date; a budget of one second stops early and says so
    assert run_stage('rl', cfg, run) == s
    s2 = run_stage('rl', recipe_config('smoke', RL_OVERRIDES + ['rl.max_steps=6', 'rl.max_seconds=0.01']), run)
    assert s2['ppo']['stopped_by_budget'] is True and s2['ppo']['steps'] == 1

def test_constrained_ppo_lists_only_catalogue_titles(prepared, tmp_path):
    "With rl.constrained, every rollout line is a catalogue title, at most n of them, no repeat and no history item"
    run = _copy(prepared, tmp_path/'constrained')
    cfg = recipe_config('smoke', RL_OVERRIDES + ['rl.max_steps=1', 'rl.constrained=true', 'rl.minibatch_size=4'])
    s = run_stage('rl', cfg, run)
    assert s['ppo']['steps'] == 1
    tasks = load_json(run.root/'rl'/'ppo'/'metrics.json')['best_validation']['tasks']
    for t, m in tasks.items():
        assert m['Count'] > 0 and m['NonExistRate'] == 0 and m['RepeatRate'] == 0 and m['InHistoryRate'] == 0, (t, m)
        assert m.get('CorrectCount', 0) <= 1

def _worker(cfg, run):
    "The rl stage in a child process, as the pipeline runs it"
    cfg_path = save_config(cfg, run.root/'config.yaml')
    code = ('import sys; from reclm_nb.core import load_config, setup_logging; from reclm_nb.stages import RunDir, run_stage; '
            'cfg = load_config(sys.argv[1]); setup_logging(); run_stage("rl", cfg, RunDir(sys.argv[2]))')
    return subprocess.Popen([sys.executable, '-c', code, str(cfg_path), str(run.root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

def test_rl_resume_after_kill(prepared, tmp_path):
    "Killed (SIGKILL) after its step-2 checkpoint and run again, PPO ends with the same curve and weights as an uninterrupted run"
    cfg = recipe_config('smoke', RL_OVERRIDES + ['rl.max_steps=5', 'rl.save_steps=1'])
    killed, whole = _copy(prepared, tmp_path/'killed'), _copy(prepared, tmp_path/'whole')
    p = _worker(cfg, killed)
    ck = killed.root/'rl'/'ppo'/'checkpoints'
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (ck/'step-2'/'state.pt').exists(): time.sleep(0.02)
    assert p.poll() is None, 'training finished before it could be killed:\n' + p.stdout.read()[-3000:]
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert not (killed.root/'rl'/'ppo'/'metrics.json').exists()
    p2 = _worker(cfg, killed); out2 = p2.communicate(timeout=600)[0]
    assert p2.returncode == 0, out2[-3000:]
    assert 'ppo: resuming from' in out2
    m = load_json(killed.root/'rl'/'ppo'/'metrics.json')
    assert m['resumed_from'] in ('step-2', 'step-3') and m['steps'] == 5
    p3 = _worker(cfg, whole); out3 = p3.communicate(timeout=600)[0]
    assert p3.returncode == 0, out3[-3000:]
    assert _curve(killed) == _curve(whole)
    from safetensors.torch import load_file
    for part in ('actor', 'critic'):
        a = load_file(str(killed.root/'rl'/'ppo'/'adapter'/part/'adapter_model.safetensors'))
        b = load_file(str(whole.root/'rl'/'ppo'/'adapter'/part/'adapter_model.safetensors'))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(ck/'step-5'/'state.pt', weights_only=False)['policy']
    sb = torch.load(whole.root/'rl'/'ppo'/'checkpoints'/'step-5'/'state.pt', weights_only=False)['policy']
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

def test_rl_two_processes_gloo(prepared, tmp_path):
    "`accelerate launch` with 2 CPU processes (gloo): each takes its slice of a batch; the main process writes the results"
    run = _copy(prepared, tmp_path/'ddp')
    s = run_stage('rl', recipe_config('smoke', RL_OVERRIDES + ['rl.max_steps=2', 'rl.num_processes=2']), run)
    m = load_json(run.root/'rl'/'ppo'/'metrics.json')
    assert m['processes'] == 2 and m['steps'] == 2 and m['prompts_per_batch'] == 4, m
    assert (run.root/'rl'/'ppo'/'model'/'config.json').exists() and (run.root/'rl'/'ppo'/'accelerate.yaml').exists()
    assert s['ppo']['processes'] == 2

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_rl_stage_gpu(prepared, tmp_path):
    "The GPU path: bf16 backbone, fp32 adapters and value head; finite rewards, KL and value losses"
    run = _copy(prepared, tmp_path/'gpu')
    cfg = recipe_config('smoke', RL_OVERRIDES + ['llm.device=cuda', 'llm.dtype=bf16', 'rl.max_steps=3'])
    s = run_stage('rl', cfg, run)
    m = load_json(run.root/'rl'/'ppo'/'metrics.json')
    assert m['device'].startswith('cuda') and m['dtype'] == 'bfloat16' and s['ppo']['steps'] == 3
    curve = load_json(run.root/'rl'/'ppo'/'curve.json')[1:]
    assert all(np.isfinite([r['reward'], r['kl'], r['value_loss']]).all() for r in curve)
    assert 'peak_cuda_mib' in m
