"""Benchmark the RL stage: our PPO against trl's GRPO on the same prompts, rewards, model and run.

Speed: samples (rollouts) per second of training and the peak RSS of each algorithm, each trained in its own process
under the same wall-clock budget. Quality: the SFT model the RL starts from, SFT+PPO and SFT+GRPO answer the same
validation prompts greedily; the JSON reports per model the mean validation reward, +/- control compliance,
CategoryRateCorrect, NonExistRate and NDCG@10, with how many prompts (users) each number rests on. Each model answers
twice when the RL samples inside the catalogue trie (`rl.constrained`): inside the trie, as the RL stage trains and
validates (the target, "RL raises mean validation reward and +/- control compliance over SFT", is judged there), and
as free text, as the evaluation's 'list' method decodes. `target_met` says whether every algorithm met it.

Correctness checks (any failure makes the benchmark fail, whatever its speed): both algorithms trained and saved a
merged model; every model answered the same prompts; the reward of a fixed set of answers is the same when computed
twice (rewards are pure functions of the answer, the example and the teacher).

    python scripts/bench_rl.py --out bench_rl.json                 # ML-100K, SmolLM2-135M, 900 s per algorithm
    python scripts/bench_rl.py --seconds 120 --set tasks.valid_users=8 --out /tmp/b.json
"""
import argparse, json, os, platform, subprocess, sys, time
from pathlib import Path

import numpy as np

from reclm_nb.core import recipe_config, apply_overrides, save_json, save_config, load_config, setup_logging, logger
from reclm_nb.stages import RunDir, run_stage

# the quality comparison: which validation tasks measure what
CONTROL_PLUS, CONTROL_MINUS = 'control+_valid', 'control-_valid'


def _cpu() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def worker(config_path: str, run_dir: str, algo: str) -> None:
    "Train one algorithm from the run's SFT model (in its own process, so its peak RSS is its own)"
    from reclm_nb.rl_stage import rl_stage
    cfg = load_config(config_path)
    setup_logging(cfg.run.log_level)
    t0 = time.time()
    info = rl_stage(cfg, RunDir(run_dir))
    info[algo]['wall_seconds'] = round(time.time() - t0, 2)
    print('BENCH_RL ' + json.dumps(info[algo]), flush=True)


def train(cfg, run: RunDir, algo: str, seconds: float) -> dict:
    "Run `worker` for `algo` in a child process; its summary plus the child's peak RSS"
    c = apply_overrides(cfg, [f'rl.algos=[{algo}]', f'rl.max_seconds={seconds}', 'rl.max_steps=-1'])
    path = save_config(c, run.root/'bench'/f'{algo}.yaml')
    p = subprocess.Popen([sys.executable, __file__, '--worker', algo, '--config', str(path), '--run', str(run.root)],
                         stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0: return {'ok': False, 'error': f'worker exited with {p.returncode}'}
    line = next((l for l in out.splitlines() if l.startswith('BENCH_RL ')), None)
    m = json.loads(line[len('BENCH_RL '):]) if line else {}
    r = c.rl
    per_step = r.batch_size * (len(r.rollouts) if algo == 'ppo' else r.num_generations)
    m.update({'ok': bool(line), 'samples_per_step': per_step, 'peak_rss_mib_process': round(usage.ru_maxrss / 1024, 1),
              'samples_per_second': round(m.get('steps', 0) * per_step / max(m.get('train_seconds') or 1e-9, 1e-9), 3)})
    return m


def recorded(cfg, run: RunDir, algo: str) -> dict:
    "What an earlier training of `algo` in this run recorded (`--reuse`): its metrics, samples per second and peak RSS"
    p = run.root/'rl'/algo/'metrics.json'
    if not p.exists() or not (run.root/'rl'/algo/'model'/'config.json').exists():
        return {'ok': False, 'error': f'{p}: no earlier training to reuse (run without --reuse)'}
    m = json.loads(p.read_text())
    r = cfg.rl
    per_step = r.batch_size * (len(r.rollouts) if algo == 'ppo' else r.num_generations)
    m.update({'ok': True, 'reused': True, 'samples_per_step': per_step, 'peak_rss_mib_process': m.get('peak_rss_mib'),
              'samples_per_second': round(m.get('steps', 0) * per_step / max(m.get('train_seconds') or 1e-9, 1e-9), 3)})
    return m


def answers(model, tok, examples: list, cfg, ctx, constrained: bool, batch: int = 8) -> tuple:
    """Greedy answers of one model to the validation prompts, as the RL stage validates (fp32 on a CPU): the records
    `list_validate_fn` writes, and seconds. `constrained`: inside the catalogue trie (capped at each prompt's n, no
    history item), as RL samples and validates with `rl.constrained`; else free text, as the evaluation's 'list' method."""
    from reclm_nb.rl import list_validate_fn, list_trie
    from reclm_nb.grpo import _GreedyLists
    trie = list_trie(tok, ctx, examples, cfg.tasks.idx) if constrained else None
    t0 = time.time()
    recs = list_validate_fn(ctx, batch)(_GreedyLists(model, tok, examples, trie, cfg.rl.max_new_tokens, cfg.rl.ban_history), examples)
    return recs, time.time() - t0


def quality(recs: list, ctx) -> dict:
    "Mean reward and RecLM-gen metrics of one model's validation records"
    from reclm_nb.rl import list_summary
    s = list_summary(recs, ctx)
    tasks = s['tasks']
    def share(task, key, flip=False):
        if task not in tasks or key not in tasks[task]: return None
        v = tasks[task][key] / 10.0                       # TargetCategoryRate is items of C per list of n = 10
        return round(1 - v if flip else v, 4)
    rate = [tasks[t]['CategoryRateCorrect'] for t in tasks if t.startswith('rate_') and 'CategoryRateCorrect' in tasks[t]]
    nonexist = [m['NonExistRate'] for m in tasks.values() if 'NonExistRate' in m]
    return {'mean_reward': round(s['reward'], 4), 'control+_compliance': share(CONTROL_PLUS, 'TargetCategoryRate'),
            'control-_compliance': share(CONTROL_MINUS, 'TargetCategoryRate', flip=True),
            'CategoryRateCorrect': round(float(np.mean(rate)), 4) if rate else None,
            'NonExistRate': round(float(np.mean(nonexist)), 4) if nonexist else None,
            'NDCG@10': round(tasks['seqrec_valid']['NDCG'], 4) if 'NDCG' in tasks.get('seqrec_valid', {}) else None,
            'prompts_per_task': {t: int(m.get('Count', 0) + m.get('Empty', 0)) for t, m in tasks.items()},
            'empty_per_task': {t: int(m.get('Empty', 0)) for t, m in tasks.items()},
            'per_task': {t: {k: round(v, 4) for k, v in m.items() if isinstance(v, (int, float))} for t, m in tasks.items()}}


MEASURES = ('mean_reward', 'control+_compliance', 'control-_compliance', 'CategoryRateCorrect', 'NonExistRate', 'NDCG@10')


def deltas(q: dict, base: dict) -> dict:
    "Each measure of `q` minus the SFT model's"
    return {k: (None if q.get(k) is None or base.get(k) is None else round(q[k] - base[k], 4)) for k in MEASURES}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--recipe', default='reclmgen')
    ap.add_argument('--set', dest='overrides', action='append', default=[], help='config override (repeatable)')
    ap.add_argument('--runs', default='runs', help='parent folder of the benchmark run')
    ap.add_argument('--run-name', default='bench_rl', help='the run folder under --runs (a copy of a finished run of the recipe reuses its SFT model)')
    ap.add_argument('--seconds', type=float, default=900.0, help='training budget per algorithm')
    ap.add_argument('--algos', default='ppo,grpo')
    ap.add_argument('--out', default='bench_rl.json')
    ap.add_argument('--decodings', default='', help="comma list of 'trie', 'free' (default: both when rl.constrained, else free)")
    ap.add_argument('--reuse', action='store_true', help='score the models a previous run of this benchmark trained (its speed as it recorded it) instead of training again')
    ap.add_argument('--worker'); ap.add_argument('--config'); ap.add_argument('--run')
    a = ap.parse_args()
    if a.worker: return worker(a.config, a.run, a.worker)
    setup_logging('INFO')
    algos = a.algos.split(',')
    cfg = recipe_config(a.recipe, [f'run.name={a.run_name}', f'run.out={a.runs}', *a.overrides])
    run = RunDir(Path(a.runs)/a.run_name)
    t0 = time.time()
    if not a.reuse: run_stage('sft', cfg, run)                    # data, split, cf, tasks, sft (reused when current)
    prep = round(time.time() - t0, 1)
    speed = {algo: (recorded(cfg, run, algo) if a.reuse else train(cfg, run, algo, a.seconds)) for algo in algos}

    from reclm_nb.rl import build_reward_context, score_completions
    from reclm_nb.llm import load_model
    from reclm_nb.generate import decode_dtype
    from reclm_nb.tasks import load_run_tasks
    from reclm_nb.rl_stage import sft_model_path
    valid = [dict(r) for r in load_run_tasks(run)['rl_valid']]
    ctx = build_reward_context(cfg, run)
    models = {'sft': str(sft_model_path(run)), **{f'sft+{x}': str(run.root/'rl'/x/'model') for x in algos}}
    # the decoding the policy was trained and validated in comes first: the target is judged on it
    decodings = ['trie', 'free'] if cfg.rl.constrained else ['free']
    if a.decodings: decodings = [d for d in decodings if d in a.decodings.split(',')] or decodings[:1]
    qual, texts_by = {}, {}
    for name, path in models.items():
        if not (Path(path)/'config.json').exists(): qual[name] = {'error': f'{path}: no merged model'}; continue
        qual[name] = {}
        model, tok = load_model(path, decode_dtype(cfg), cfg.llm.device, threads=cfg.run.threads)   # fp32 on a CPU
        for dec in decodings:
            recs, secs = answers(model, tok, valid, cfg, ctx, dec == 'trie')
            texts_by[(name, dec)] = [r['text'] for r in recs]
            qual[name][dec] = {**quality(recs, ctx), 'generation_seconds': round(secs, 1)}
            logger.info(f"bench_rl: {name} ({dec}): mean validation reward {qual[name][dec]['mean_reward']}")
    # correctness: rewards are a pure function of (answer, example, teacher)
    probe = texts_by.get(('sft', decodings[0]), [])[:16]
    r1 = [x.list_reward for x in score_completions(probe, valid[:len(probe)], ctx)]
    r2 = [x.list_reward for x in score_completions(probe, valid[:len(probe)], ctx)]
    checks = {'trained': {x: bool(speed[x].get('ok')) for x in algos},
              'merged_models': {n: 'error' not in q for n, q in qual.items()},
              'same_prompts': len({len(t) for t in texts_by.values()}) == 1 and len(texts_by) == len(models) * len(decodings),
              'reward_deterministic': r1 == r2 and len(r1) > 0}
    ok = all(all(v.values()) if isinstance(v, dict) else v for v in checks.values())
    target = {}
    for x in algos:
        q, base = qual.get(f'sft+{x}', {}), qual.get('sft', {})
        if not all(decodings[0] in d for d in (q, base)): continue
        d = deltas(q[decodings[0]], base[decodings[0]])
        target[x] = {'decoding': decodings[0], 'delta_vs_sft': d, 'raises_reward': (d['mean_reward'] or 0) > 0,
                     'raises_control_compliance': (d['control+_compliance'] or 0) + (d['control-_compliance'] or 0) > 0,
                     **{f'delta_vs_sft_{dec}': deltas(q[dec], base[dec]) for dec in decodings[1:]}}
        target[x]['met'] = target[x]['raises_reward'] and target[x]['raises_control_compliance']
    c = cfg
    res = {'benchmark': 'rl', 'ok': ok, 'checks': checks, 'machine': {'cpu': _cpu(), 'cores': os.cpu_count(), 'threads': c.run.threads},
           'protocol': {'recipe': a.recipe, 'overrides': a.overrides, 'model': c.llm.model, 'budget_seconds_per_algo': a.seconds,
                        'rl_train_prompts_per_episode': c.tasks.rl_train, 'valid_prompts': len(valid), 'valid_users_per_task': c.tasks.valid_users,
                        'valid_tasks': c.tasks.rl_valid, 'batch_size': c.rl.batch_size, 'ppo_rollouts': c.rl.rollouts,
                        'grpo_group': c.rl.num_generations, 'max_new_tokens': c.rl.max_new_tokens, 'lr': c.rl.lr,
                        'decoding': {'trie': 'greedy inside the catalogue trie (as RL samples and validates; target judged here when rl.constrained)',
                                     'free': 'greedy free text, read as the evaluation reads lists'}, 'decodings': decodings,
                        'dtype': 'fp32 on a CPU (eval.dtype auto)', 'rl_valid_examples_during_training': c.rl.eval_examples, 'reward': 'RecLM-gen list reward (alpha %.2f), exact titles' % c.rl.alpha,
                        'compliance': '+: share of the 10 listed items in C; -: share outside C (from TargetCategoryRate / 10)'},
           'prepare_seconds': prep, 'speed': speed, 'quality': qual, 'target': target,
           'target_met': bool(target) and all(t['met'] for t in target.values())}
    if len(speed) == 2 and all(s.get('samples_per_second') for s in speed.values()):
        res['speed_ratio_ppo_over_grpo'] = round(speed['ppo']['samples_per_second'] / speed['grpo']['samples_per_second'], 3)
    save_json(res, a.out)
    logger.info(json.dumps({k: res[k] for k in ('ok', 'checks', 'target', 'target_met')}, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
