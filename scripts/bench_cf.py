#!/usr/bin/env python
"""Benchmark our collaborative models against RecBole 1.2.1 on one MovieLens-100K leave-one-out split.

Pairs (ours vs RecBole): `sasrec` (SASRec vs SASRec), `bpr` (BiasMF vs BPR), `lightgcn` (LightGCN vs LightGCN).
Both sides see the same data: the RecBole atomic file is written from `reclm_nb.sources.load_ml100k()` with each
interaction's timestamp set to its position in the user's sequence, so RecBole's `LS`/`TO` leave-one-out split
reproduces our `leave_one_out` split exactly (checked item by item in the RecBole driver). Protocol on both sides:
full ranking over the catalogue, every history item masked, history window 50, NDCG@10 and HR@10 on the test users.

RecBole does not mask the history for sequential models (its full-sort loader passes no history index for them),
so the driver masks it itself; RecBole's own unmasked test numbers are recorded too (`test_unmasked`).

RecBole runs in its own venv (created on first use) in a subprocess: a driver written to a temp file trains it
epoch by epoch, stops at the first epoch end past `--recbole-minutes`, restores the best-validation weights and
tests them. The JSON is rewritten atomically after each finished model.

    nice python scripts/bench_cf.py --out bench_cf.json --models sasrec,bpr,lightgcn --threads 2
"""
from __future__ import annotations
import argparse, inspect, json, logging, os, platform, shutil, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

log = logging.getLogger('bench_cf')

RECBOLE_VERSION = '1.2.1'
RECBOLE_INSTALL = [['torch==2.13.0'], [f'recbole=={RECBOLE_VERSION}', 'numpy<2', 'pandas<3', 'scipy<1.13']]
PAIRS = {  # our name -> (our class in reclm_nb.cf, RecBole model)
    'sasrec': ('SASRec', 'SASRec'),
    'bpr': ('BiasMF', 'BPR'),
    'lightgcn': ('LightGCN', 'LightGCN'),
}
# Targets of the issue: SASRec >= 1.1x RecBole's test NDCG@10 in <= 1/10 of its training time; BPR and LightGCN
# match or beat RecBole's NDCG@10, faster.
TARGETS = {'sasrec': {'ratio_ndcg10_min': 1.1, 'ratio_train_seconds_max': 0.1},
           'bpr': {'ratio_ndcg10_min': 1.0, 'ratio_train_seconds_max': 1.0},
           'lightgcn': {'ratio_ndcg10_min': 1.0, 'ratio_train_seconds_max': 1.0}}
DATASET = 'ml100k_bench'  # not 'ml-100k': RecBole would swap in its bundled copy and presets

# RecBole config per model; anything not set here is RecBole's default (overall.yaml + the model's yaml).
RECBOLE_COMMON = {
    'load_col': {'inter': ['user_id', 'item_id', 'timestamp']},
    'eval_args': {'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'mode': 'full', 'group_by': 'user'},
    'metrics': ['NDCG', 'Hit'], 'topk': [10], 'valid_metric': 'NDCG@10', 'metric_decimal_place': 6,
    'MAX_ITEM_LIST_LENGTH': 50, 'eval_batch_size': 1 << 20,
    'reproducibility': True, 'show_progress': False, 'use_gpu': False, 'gpu_id': '', 'device': 'cpu',
    'stopping_step': 10, 'save_dataset': False, 'save_dataloaders': False, 'log_wandb': False,
}
RECBOLE_MODEL = {
    'SASRec': {'loss_type': 'CE', 'train_neg_sample_args': None},
    'BPR': {'train_neg_sample_args': {'distribution': 'uniform', 'sample_num': 1}},
    'LightGCN': {'train_neg_sample_args': {'distribution': 'uniform', 'sample_num': 1}},
}

# ----------------------------------------------------------------------------------------------------------------
# The RecBole driver: runs inside the RecBole venv. Reads a job JSON (argv[1]); logs to stderr; prints one line
# `BENCH_RESULT {...}` on stdout.
DRIVER = r'''
import copy, json, logging, os, sys, time
job = json.load(open(sys.argv[1]))
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(message)s')
dlog = logging.getLogger('driver')
import numpy as np, torch
torch.set_num_threads(job['threads'])
import recbole
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed, get_model, get_trainer
from recbole.utils.utils import calculate_valid_score
torch.autograd.set_detect_anomaly(False)

t_setup = time.time()
cfg = dict(job['config'], seed=job['seed'], data_path=job['data_path'], checkpoint_dir=job['checkpoint_dir'],
           epochs=job['max_epochs'])
config = Config(model=job['model'], dataset=job['dataset'], config_dict=cfg)
init_seed(config['seed'], config['reproducibility'])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
init_seed(config['seed'], config['reproducibility'])
model_class = get_model(config['model'])
torch.autograd.set_detect_anomaly(False)  # importing the model zoo (sine.py) turns anomaly mode on globally
model = model_class(config, train_data._dataset).to(config['device'])
trainer = get_trainer(config['MODEL_TYPE'], config['model'])(config, model)
setup_seconds = time.time() - t_setup
sequential = not hasattr(test_data, 'uid_list')
uid_f, iid_f = dataset.uid_field, dataset.iid_field

# Full sequences (internal ids) from the atomic file we were given: position order = our order.
seqs = {}
with open(os.path.join(job['data_path'], job['dataset'], job['dataset'] + '.inter')) as f:
    next(f)
    for line in f:
        u, i, t = line.rstrip('\n').split('\t'); seqs.setdefault(u, []).append((float(t), i))
useq = {}
for u, s in seqs.items():
    s.sort()
    useq[int(dataset.token2id(uid_f, u))] = [int(x) for x in dataset.token2id(iid_f, [i for _, i in s])]

def check_split(data, cut):
    "Examples whose target or history differ from the sequences (cut=-2 valid, -1 test); returns (n, mismatches)"
    bad = 0
    if sequential:
        feat = data._dataset.inter_feat
        L = config['MAX_ITEM_LIST_LENGTH']
        for u, tgt, lst, n in zip(feat[uid_f].tolist(), feat[iid_f].tolist(), feat[iid_f + config['LIST_SUFFIX']].tolist(),
                                  feat[config['ITEM_LIST_LENGTH_FIELD']].tolist()):
            s = useq[u]
            bad += tgt != s[cut] or lst[:n] != s[:len(s) + cut][-L:]
        return len(feat), bad
    for u in data.uid_list.tolist():
        s = useq[u]
        bad += data.uid2positive_item[u].tolist() != [s[cut]] or sorted(data.uid2history_item[u].tolist()) != sorted(s[:len(s) + cut])
    return len(data.uid_list), bad

n_valid, bad_valid = check_split(valid_data, -2)
n_test, bad_test = check_split(test_data, -1)
train_n = len(train_data._dataset)
dlog.info(f'recbole {job["model"]}: {n_test} test users, {n_valid} valid users, {dataset.item_num - 1} items, '
          f'{train_n} training examples; split mismatches valid={bad_valid} test={bad_test}; setup {setup_seconds:.1f} s')

# History masking for sequential models (RecBole's general-model loaders already mask it).
MASK = {'part': None}
masks = {'valid': {u: torch.tensor(s[:-2]) for u, s in useq.items()}, 'test': {u: torch.tensor(s[:-1]) for u, s in useq.items()}}
_orig_eval = trainer._full_sort_batch_eval
def _masked_eval(batched):
    interaction, scores, pu, pi = _orig_eval(batched)
    if sequential and MASK['part']:
        m = masks[MASK['part']]
        hs = [m[u] for u in interaction[uid_f].tolist()]
        rows = torch.cat([torch.full_like(h, r) for r, h in enumerate(hs)]); cols = torch.cat(hs)
        scores[rows, cols] = -np.inf
    return interaction, scores, pu, pi
trainer._full_sort_batch_eval = _masked_eval

def run_eval(data, part, masked=True):
    MASK['part'] = part if masked else None
    r = trainer.evaluate(data, load_best_model=False)
    return {'ndcg10': float(r['ndcg@10']), 'hr10': float(r['hit@10'])}

trainer.eval_collector.data_collect(train_data)
cap, best, best_state, best_epoch, stale, epochs = job['minutes'] * 60, -np.inf, None, -1, 0, []
t_loop = time.time()
stop_reason = 'max_epochs'
for epoch in range(job['max_epochs']):
    t0 = time.time()
    loss = trainer._train_epoch(train_data, epoch, show_progress=False)
    t1 = time.time()
    v = run_eval(valid_data, 'valid')
    t2 = time.time()
    loss = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
    epochs.append({'epoch': epoch, 'train_seconds': round(t1 - t0, 3), 'valid_seconds': round(t2 - t1, 3),
                   'loss': round(loss, 4), 'valid_ndcg10': v['ndcg10'], 'valid_hr10': v['hr10']})
    dlog.info(f'recbole {job["model"]} epoch {epoch}: train {t1 - t0:.1f} s, loss {loss:.4f}, valid NDCG@10 {v["ndcg10"]:.4f} '
              f'HR@10 {v["hr10"]:.4f} ({t2 - t0:.1f} s, {t2 - t_loop:.0f} s in all)')
    if v['ndcg10'] > best:
        best, best_epoch, stale = v['ndcg10'], epoch, 0
        best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
    else:
        stale += 1
    if stale >= config['stopping_step']: stop_reason = 'early_stopping'; break
    if time.time() - t_loop >= cap: stop_reason = 'time_cap'; break
fit_seconds = time.time() - t_loop

model.load_state_dict(best_state)
for name in getattr(model, 'other_parameter_name', []):  # cached propagated embeddings (LightGCN): recompute
    if name.startswith('restore_'): setattr(model, name, None)
t0 = time.time()
test = run_eval(test_data, 'test')
test_seconds = time.time() - t0
unmasked = run_eval(test_data, 'test', masked=False) if sequential else None
out = {'model': job['model'], 'recbole_version': recbole.__version__, 'torch_version': torch.__version__,
       'threads': torch.get_num_threads(), 'test_ndcg10': test['ndcg10'], 'test_hr10': test['hr10'],
       'valid_ndcg10': best, 'best_epoch': best_epoch, 'epochs': len(epochs), 'stop_reason': stop_reason,
       'train_seconds': round(sum(e['train_seconds'] for e in epochs), 3),
       'fit_seconds': round(fit_seconds, 3), 'setup_seconds': round(setup_seconds, 3), 'test_seconds': round(test_seconds, 3),
       'epoch_train_seconds': [e['train_seconds'] for e in epochs], 'per_epoch': epochs,
       'test_unmasked': unmasked, 'history_masking': 'driver' if sequential else 'recbole',
       'n_test_users': n_test, 'n_valid_users': n_valid, 'n_items': int(dataset.item_num - 1), 'n_train_examples': train_n,
       'split_mismatches': {'valid': bad_valid, 'test': bad_test},
       'config': {k: (v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v))
                  for k, v in config.final_config_dict.items()
                  if k in set(job['config']) | {'epochs', 'learning_rate', 'train_batch_size', 'stopping_step', 'embedding_size',
                                                'hidden_size', 'n_layers', 'n_heads', 'inner_size', 'hidden_dropout_prob',
                                                'attn_dropout_prob', 'reg_weight', 'weight_decay', 'learner', 'seed',
                                                'train_neg_sample_args', 'MAX_ITEM_LIST_LENGTH'}}}
print('BENCH_RESULT ' + json.dumps(out, default=str), flush=True)
'''


# ----------------------------------------------------------------------------------------------------------------
def write_json(obj, path:Path):
    "Write `obj` to `path` atomically (temp file in the same folder, then rename)"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'w') as f: json.dump(obj, f, indent=2, default=str); f.write('\n')
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp): os.unlink(tmp)
        raise


def ensure_venv(venv:Path)->Path:
    "The RecBole venv's python, creating the venv and installing RecBole first if needed"
    py = venv/'bin'/'python'
    probe = 'import recbole, sys; sys.exit(0 if recbole.__version__ == %r else 3)' % RECBOLE_VERSION
    if py.exists() and subprocess.run([str(py), '-c', probe], capture_output=True).returncode == 0: return py
    log.info(f'creating the RecBole {RECBOLE_VERSION} venv at {venv} (a few minutes)')
    if not py.exists(): subprocess.run(['python3', '-m', 'venv', str(venv)], check=True)
    for pkgs in RECBOLE_INSTALL:
        log.info(f'pip install {" ".join(pkgs)}')
        r = subprocess.run([str(py), '-m', 'pip', 'install', '--quiet', *pkgs], capture_output=True, text=True)
        if r.returncode: raise RuntimeError(f'pip install {pkgs} failed in {venv}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    r = subprocess.run([str(py), '-c', probe], capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'{venv}: recbole {RECBOLE_VERSION} not importable after install:\n{r.stderr[-3000:]}')
    return py


def write_atomic_files(data, root:Path)->Path:
    "RecBole atomic file `<root>/<DATASET>/<DATASET>.inter`; timestamp = position in the user's sequence"
    folder = root/DATASET
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder/f'{DATASET}.inter', 'w') as f:
        f.write('user_id:token\titem_id:token\ttimestamp:float\n')
        for u, seq in data.sequences.items():
            for pos, it in enumerate(seq): f.write(f'{u}\t{it}\t{pos}\n')
    return root


def _die_with_parent():
    "preexec_fn: the driver gets SIGTERM if the bench dies (Linux)"
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception: pass


def run_recbole(py:Path, model:str, data_root:Path, work:Path, args)->dict:
    "Train and test one RecBole model in the venv; the driver's result dict"
    job = {'model': model, 'dataset': DATASET, 'data_path': str(data_root), 'checkpoint_dir': str(work/'saved'),
           'seed': args.seed, 'threads': args.threads, 'minutes': args.recbole_minutes, 'max_epochs': args.recbole_epochs,
           'config': {**RECBOLE_COMMON, 'train_batch_size': args.recbole_batch_size, **RECBOLE_MODEL[model]}}
    (work/'job.json').write_text(json.dumps(job))
    (work/'driver.py').write_text(DRIVER)
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1', OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED='1', CUDA_VISIBLE_DEVICES='')
    env.pop('PYTHONPATH', None)
    log.info(f'recbole {model}: starting (cap {args.recbole_minutes} min, at most {args.recbole_epochs} epochs)')
    t0 = time.time()
    p = subprocess.Popen([str(py), str(work/'driver.py'), str(work/'job.json')], cwd=work, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
    tail = []
    def pump():
        for line in p.stderr:
            line = line.rstrip()
            tail.append(line); del tail[:-50]
            if line.startswith('recbole '): log.info(line)
            elif line: log.debug(line)
    th = threading.Thread(target=pump, daemon=True); th.start()
    try:
        out = p.stdout.read(); p.wait(); th.join(5)
    finally:
        if p.poll() is None: p.kill(); p.wait()
    res = [l for l in out.splitlines() if l.startswith('BENCH_RESULT ')]
    if p.returncode or not res:
        raise RuntimeError(f'recbole {model} driver failed (exit {p.returncode}); last stderr lines:\n' + '\n'.join(tail[-30:]))
    r = json.loads(res[-1][len('BENCH_RESULT '):])
    r['wall_seconds'] = round(time.time() - t0, 3)
    return r


# ----------------------------------------------------------------------------------------------------------------
def our_model(name:str, args):
    "Our model for pair `name` with its class defaults (plus `seed`, and `progress` off unless -v, where it takes them)"
    from reclm_nb.cf import RECOMMENDERS, recommender_class
    cls_name = PAIRS[name][0]
    kind = next((k for k, ref in RECOMMENDERS.items() if str(ref).endswith(':' + cls_name)), None)
    if kind is None: raise SystemExit(f'bench_cf: reclm_nb has no model class {cls_name} for pair {name!r}; known: {sorted(RECOMMENDERS)}')
    cls = recommender_class(kind)
    params, kw = inspect.signature(cls).parameters, {}
    if 'seed' in params or 'seed' in getattr(cls, 'defaults', {}): kw['seed'] = args.seed
    if 'progress' in params: kw['progress'] = args.verbose
    kw.update(json.loads(args.ours_params).get(name, {}))
    return cls(**kw)


def _jsonable(x):
    try: json.dumps(x); return x
    except TypeError:
        if isinstance(x, dict): return {str(k): _jsonable(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)): return [_jsonable(v) for v in x]
        if hasattr(x, 'item'):
            try: return x.item()
            except Exception: pass
        if hasattr(x, '__dict__'): return _jsonable(vars(x))
        return str(x)


def run_ours(name:str, split, args)->tuple:
    "Fit and test our model for pair `name`: (result dict, protocol header)"
    import numpy as np, torch
    from reclm_nb.evaluate import evaluate
    torch.set_num_threads(args.threads); torch.manual_seed(args.seed); np.random.seed(args.seed)
    model = our_model(name, args)
    log.info(f'ours {name}: fitting {type(model).__name__}')
    t0 = time.time()
    model.fit(split)
    secs = time.time() - t0
    t1 = time.time()
    r = evaluate(model, split, 'test', ks=[10], progress=False)
    test_secs = time.time() - t1
    val = lambda m: float(r.table[(r.table.metric == m) & (r.table.k == 10)].value.iloc[0])
    out = {'model_class': type(model).__name__,
           'test_ndcg10': val('NDCG'), 'test_hr10': val('HR'), 'train_seconds': round(secs, 3), 'test_seconds': round(test_secs, 3),
           'threads': torch.get_num_threads(), 'n_test_users': len(split.test), 'n_items': split.n_items}
    info = getattr(model, 'fit_info', None)
    if info is not None: out['fit_info'] = _jsonable(info)
    cfg = getattr(model, 'config', None)
    if callable(cfg):
        try: out['config'] = _jsonable(cfg())
        except Exception: pass
    log.info(f'ours {name}: NDCG@10 {out["test_ndcg10"]:.4f} HR@10 {out["test_hr10"]:.4f}, fit {secs:.1f} s')
    return out, r.protocol.header()


def compare(pair:dict, name:str)->dict:
    "Ratios ours/RecBole and whether the pair's target (`TARGETS[name]`) is met"
    target = TARGETS[name]
    o, rb = pair.get('ours'), pair.get('recbole')
    if not o or not rb: return pair
    rn = o['test_ndcg10']/rb['test_ndcg10'] if rb['test_ndcg10'] else None
    rt = o['train_seconds']/rb['train_seconds'] if rb['train_seconds'] else None
    pair.update(ratio_ndcg10=rn, ratio_hr10=o['test_hr10']/rb['test_hr10'] if rb['test_hr10'] else None,
                ratio_train_seconds=rt, ratio_fit_seconds=o['train_seconds']/rb['fit_seconds'] if rb['fit_seconds'] else None,
                protocol_match=(o['n_test_users'] == rb['n_test_users'] and o['n_items'] == rb['n_items']
                                and not any(rb['split_mismatches'].values())),
                target=target)
    # a pair whose protocols differ compared nothing: it fails, however fast it was
    pair['target_met'] = (False if not pair['protocol_match'] else None if rn is None or rt is None
                          else bool(rn >= target['ratio_ndcg10_min'] and rt <= target['ratio_train_seconds_max']))
    return pair


def summary_table(pairs:dict)->str:
    f = lambda v, p='.4f': '-' if v is None else format(v, p)
    rows = ['pair      side     NDCG@10  HR@10   train_s  epochs',
            '--------  -------  -------  ------  -------  ------']
    for name, pr in pairs.items():
        for side in ('ours', 'recbole'):
            r = pr.get(side)
            if not r: continue
            ep = r.get('epochs', (r.get('fit_info') or {}).get('epochs') if isinstance(r.get('fit_info'), dict) else None)
            rows.append(f'{name:<8}  {side:<7}  {f(r["test_ndcg10"])}   {f(r["test_hr10"])}  {f(r["train_seconds"], "7.1f")}  {ep if ep is not None else "-"}')
        if 'ratio_ndcg10' in pr:
            rows.append(f'{name:<8}  ratio    {f(pr["ratio_ndcg10"], ".3f")}x  {f(pr["ratio_hr10"], ".3f")}x {f(pr["ratio_train_seconds"], ".4f")}x  '
                        f'target {"met" if pr["target_met"] else "not met" if pr["target_met"] is False else "n/a"}')
    return '\n'.join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--out', default='bench_cf.json', help='JSON results (rewritten after each finished model)')
    ap.add_argument('--models', default='sasrec,bpr,lightgcn', help=f'pairs to run, from {",".join(PAIRS)}')
    ap.add_argument('--recbole-minutes', type=float, default=60, help="wall-clock cap on each RecBole model's training (checked at epoch ends)")
    ap.add_argument('--recbole-epochs', type=int, default=300, help='most epochs for each RecBole model (300 is RecBole\'s own default)')
    ap.add_argument('--recbole-batch-size', type=int, default=256, help='RecBole train_batch_size, every model')
    ap.add_argument('--threads', type=int, default=2, help='torch threads, both sides')
    ap.add_argument('--skip-recbole', action='store_true')
    ap.add_argument('--skip-ours', action='store_true')
    ap.add_argument('--venv', default='~/.cache/reclm_nb/bench/recbole-venv', help='the RecBole venv (created if missing)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--ours-params', default='{"sasrec": {"max_seconds": 300}}',
                    help='JSON: pair name -> hyper-parameters for our model (default caps our SASRec at 300 s of training)')
    ap.add_argument('-v', '--verbose', action='store_true', help='also log RecBole\'s own messages')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')
    names = [m.strip() for m in args.models.split(',') if m.strip()]
    bad = [m for m in names if m not in PAIRS]
    if bad: ap.error(f'--models: unknown {bad}; known: {list(PAIRS)}')
    if not args.verbose: os.environ.setdefault('TQDM_DISABLE', '1')  # our models' per-epoch bars; the log has the summaries
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` blocks stop the driver and clean up

    import torch
    from reclm_nb.sources import load_ml100k
    from reclm_nb.split import leave_one_out, Protocol
    torch.set_num_threads(args.threads)
    data = load_ml100k()
    split = leave_one_out(data, window=50)
    out_path = Path(args.out)
    proto = Protocol(split.dataset, f'{split.kind}/test', 'full', [10], len(split.test), split.window, args.seed).header()
    result = {'machine': {'cpu_count': os.cpu_count(), 'platform': platform.platform(), 'python': platform.python_version(),
                          'torch': torch.__version__, 'threads': args.threads},
              'args': vars(args), 'targets': TARGETS, 'protocol': proto,
              'recbole_protocol': (f'RecBole {RECBOLE_VERSION} | dataset {DATASET} (= ours, timestamp = sequence position) | '
                                   f'eval_args LS valid_and_test, order TO, mode full, group_by user | MAX_ITEM_LIST_LENGTH 50 | '
                                   f'history masked (by the driver for sequential models) | best-valid-NDCG@10 weights tested'),
              'timing': {'ours.train_seconds': 'wall time of fit() (includes any validation/early stopping it does)',
                         'recbole.train_seconds': 'sum of training-epoch times (excludes data loading and per-epoch validation)',
                         'recbole.fit_seconds': 'training loop wall time incl. per-epoch validation (what the cap applies to)',
                         'ratio_train_seconds': 'ours.train_seconds / recbole.train_seconds',
                         'ratio_fit_seconds': 'ours.train_seconds / recbole.fit_seconds'},
              'started': time.strftime('%Y-%m-%dT%H:%M:%S'), 'pairs': {}}
    write_json(result, out_path)
    py = None if args.skip_recbole else ensure_venv(Path(args.venv).expanduser())
    tmp = Path(tempfile.mkdtemp(prefix='bench_cf_'))
    try:
        data_root = write_atomic_files(data, tmp/'data') if py else None
        for name in names:
            pair = result['pairs'].setdefault(name, {'ours_class': PAIRS[name][0], 'recbole_model': PAIRS[name][1]})
            if not args.skip_ours:
                pair['ours'], result['protocol'] = run_ours(name, split, args)
                write_json(result, out_path)
            if py:
                work = tmp/f'work_{name}'; work.mkdir()
                pair['recbole'] = run_recbole(py, PAIRS[name][1], data_root, work, args)
                rb = pair['recbole']
                log.info(f'recbole {PAIRS[name][1]}: test NDCG@10 {rb["test_ndcg10"]:.4f} HR@10 {rb["test_hr10"]:.4f}, '
                         f'{rb["epochs"]} epochs ({rb["stop_reason"]}), train {rb["train_seconds"]:.1f} s, '
                         f'{rb["n_test_users"]} test users, {rb["n_items"]} items, split mismatches {rb["split_mismatches"]}')
                if rb['n_test_users'] != len(split.test) or rb['n_items'] != split.n_items or any(rb['split_mismatches'].values()):
                    log.warning(f'recbole {name}: protocol differs from ours ({len(split.test)} test users, {split.n_items} items)')
            compare(pair, name)
            result['finished'] = time.strftime('%Y-%m-%dT%H:%M:%S')
            write_json(result, out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(f'{proto}\n' + summary_table(result['pairs']) + f'\nwritten: {out_path}')
    return result


if __name__ == '__main__':
    res = main()
    failed = [n for n, p in res['pairs'].items() if p.get('target_met') is False]
    if failed: log.error(f'bench_cf: target not met (or protocol mismatch) for {failed}'); sys.exit(1)
