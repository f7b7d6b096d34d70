#!/usr/bin/env python
"""Benchmark LLM decoding for recommendation: seconds per user, ours vs the naive baseline, same model, same run.

Two tasks on ML-100K with the embedded SmolLM2-135M-Instruct (or `--model`), BIGRec's canonical prompt (last 10
titles of each test user, the run's system message), each under both normalisations of `reclm_nb.decode`:
`vocab` (the model's own log-probs) and `trie` (each branching step renormalised over the catalogue trie).

- **beam**: beam-20 decoding constrained to the catalogue (all 1682 quoted titles in a token trie ending in EOS),
  `--length-penalty` 0 (summed log-probs, as the evaluation runs it). Ours: `constrained_beam_search_batch`
  (`--batch-users` users per search on one tree-shaped KV cache). The one-user search is timed on the naive
  users too, and must return the same items. Naive: `model.generate(num_beams=20,
  prefix_allowed_tokens_fn=trie)`, transformers' own beam search with the same trie (`renormalize_logits=True`
  for `trie`), via `decode.hf_constrained_beam_search`. The JSON records how many of the top-20 agree and
  whether the best item is the same.
- **score**: 100 candidate titles per user (the target and 99 seeded random items). Ours:
  `score_candidates_batch` (`--batch-users` users per call, every candidate prefix fed once on the tree cache;
  `trie` normalises over the whole catalogue). Naive: one full forward pass over prompt + candidate per
  candidate (`decode.naive_candidate_scores`). The JSON records the largest absolute difference between the
  two score vectors.

The naive sides are slow, so they run on the first `--naive-users` users only; seconds per user are averaged over
the users each side ran. Targets (CPU): ours at most 1 s/user for each task.

Correctness comes first: a task whose checks fail reports `target_met: false` (and the script exits 1), however
fast it was. The checks are dtype-aware. In fp32 the batched and one-user searches must return the same items in
the same order, with scores within 1e-3 nats of each other and of the naive side. Below fp32 (bf16) a model's
own rounding moves a title's summed log-probability by up to about half a nat between two ways of computing it
(measured: SmolLM2-135M, bf16 vs fp32, and bf16 computed in two batch layouts), so two rankings are compared up
to that tolerance (`--tol`, default 1e-3 in fp32, 1.0 in bf16/fp16): they agree when every pair of items they
order differently, and every item in one top-K but not the other, lies within the tolerance of each other's score.
A ranking that differs by more than the dtype can explain fails.

    python scripts/bench_generate.py --out bench_generate.json --threads 2
"""
from __future__ import annotations
import argparse, logging, platform, time

log = logging.getLogger('bench_generate')
TARGET_SECONDS_PER_USER = 1.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--out', default='bench_generate.json', help='JSON results (written atomically)')
    ap.add_argument('--model', default='smollm2-135m-instruct', help='model spec (see reclm_nb.llm.load_model)')
    ap.add_argument('--dtype', default='auto')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--users', type=int, default=10, help='test users for our side')
    ap.add_argument('--naive-users', type=int, default=3, help='test users for the naive side (the first of ours)')
    ap.add_argument('--num-beams', type=int, default=20)
    ap.add_argument('--candidates', type=int, default=100)
    ap.add_argument('--length-penalty', type=float, default=0.0, help="beam score = sum / length**lp ('vocab' only)")
    ap.add_argument('--batch-users', type=int, default=8, help='users per batched beam search and scoring call (ours)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--tol', type=float, default=None, help='score tolerance in nats (default: 1e-3 in fp32, 1.0 below)')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(message)s')

    import numpy as np, torch
    from reclm_nb.core import save_json
    from reclm_nb.sources import load_ml100k
    from reclm_nb.split import leave_one_out
    from reclm_nb.tasks import unique_titles
    from reclm_nb.llm import load_model, chat_prompt
    from reclm_nb.llmrec import bigrec_messages
    from reclm_nb.trie import CatalogTrie
    from reclm_nb.decode import (constrained_beam_search, constrained_beam_search_batch, hf_constrained_beam_search,
                                 score_candidates_batch, naive_candidate_scores, NORMALIZE)
    torch.set_num_threads(args.threads)
    data = load_ml100k(); sp = leave_one_out(data, window=50)
    titles = unique_titles(data.items); titles = {i: titles[i] for i in sp.item_ids}
    model, tok = load_model(args.model, dtype=args.dtype, threads=args.threads)
    fp32 = next(model.parameters()).dtype == torch.float32
    tol = args.tol if args.tol is not None else (1e-3 if fp32 else 1.0)
    rng = np.random.default_rng(args.seed)
    users = sorted(rng.choice(len(sp.test), args.users, replace=False).tolist())
    prompts = [chat_prompt(tok, bigrec_messages(titles, sp.test.histories[u])) for u in users]
    t0 = time.time(); trie = CatalogTrie(tok, titles, '"', '"', duplicates='keep'); trie_s = time.time() - t0
    log.info(f'{trie} built in {trie_s:.2f} s; {len(users)} users (naive: {args.naive_users}), {args.threads} threads')

    def timed(fn, *a, **k):
        t = time.perf_counter(); r = fn(*a, **k); return r, time.perf_counter() - t
    mean = lambda xs: float(np.mean(xs)) if xs else None
    constrained_beam_search(model, tok, prompts[0], trie, num_beams=2)   # warm-up (allocations, kernels)
    cand_lists = []
    for u in users:
        target = sp.test.targets[u][0]
        pool = [i for i in sp.item_ids if i != target]
        cands = [target] + [pool[x] for x in rng.choice(len(pool), args.candidates - 1, replace=False)]
        cand_lists.append([f'"{titles[c]}"' for c in cands])
    res = {
        'machine': {'cpu_count': __import__('os').cpu_count(), 'platform': platform.platform(), 'torch': torch.__version__,
                    'threads': args.threads, 'dtype': str(next(model.parameters()).dtype)},
        'args': vars(args), 'catalogue': len(trie), 'trie_paths': len(trie.paths), 'trie_longest_tokens': trie.max_len,
        'trie_build_seconds': round(trie_s, 3), 'prompt_tokens_mean': mean([len(tok(p).input_ids) for p in prompts]),
        'beam': {}, 'score': {}, 'target_seconds_per_user': TARGET_SECONDS_PER_USER,
    }
    for norm in NORMALIZE:
        lp = args.length_penalty if norm == 'vocab' else 0.0
        ours_b, naive_b, single_b, same_b = [], [], [], []
        for lo in range(0, len(prompts), args.batch_users):
            r, t = timed(constrained_beam_search_batch, model, tok, prompts[lo:lo + args.batch_users], trie, args.num_beams,
                         length_penalty=lp, normalize=norm)
            ours_b += [(x, t/len(r)) for x in r]
            log.info(f'beam {norm} users {lo}..{lo + len(r) - 1} (batched): {t/len(r):.2f} s/user')
        for j, p in enumerate(prompts[:args.naive_users]):
            single_b.append(timed(constrained_beam_search, model, tok, p, trie, args.num_beams, length_penalty=lp, normalize=norm))
            naive_b.append(timed(hf_constrained_beam_search, model, tok, p, trie, args.num_beams, length_penalty=lp, normalize=norm))
            same_b.append([i for i, _ in single_b[-1][0]] == [i for i, _ in ours_b[j][0]])
            log.info(f'beam {norm} user {j}: one-user search {single_b[-1][1]:.2f} s, naive {naive_b[-1][1]:.2f} s')
        agree_b = [rankings_agree(ours_b[j][0], single_b[j][0], tol) for j in range(len(single_b))]
        res['beam'][norm] = {
            'length_penalty': lp, 'tolerance_nats': tol, 'batched_agrees_with_one_user': agree_b,
            'max_abs_score_diff_batched_vs_one_user': max((max_score_diff(ours_b[j][0], single_b[j][0]) for j in range(len(single_b))), default=None), 'ours_seconds_per_user': mean([t for _, t in ours_b]), 'naive_seconds_per_user': mean([t for _, t in naive_b]),
            'ours_one_user_seconds_per_user': mean([t for _, t in single_b]), 'batch_users': args.batch_users,
            'batched_equals_one_user': same_b, 'ours_users': len(ours_b), 'naive_users': len(naive_b),
            'top20_overlap_mean': mean([len({i for i, _ in o[0]} & {i for i, _ in n[0]}) for o, n in zip(ours_b, naive_b)]),
            'same_top_item': [bool(o[0] and n[0] and o[0][0][0] == n[0][0][0]) for o, n in zip(ours_b, naive_b)],
            'ours_top_score_ge_naive': [bool(o[0] and n[0] and o[0][0][1] >= n[0][0][1] - tol) for o, n in zip(ours_b, naive_b)]}
        ours_s, naive_s, diffs, scores, naive_sc = [], [], [], [], []
        kw = dict(normalize=norm, trie=trie if norm == 'trie' else None)
        for lo in range(0, len(prompts), args.batch_users):
            s, t = timed(score_candidates_batch, model, tok, prompts[lo:lo + args.batch_users], cand_lists[lo:lo + args.batch_users], **kw)
            scores += s; ours_s += [t/len(s)]*len(s)
            log.info(f'score {norm} users {lo}..{lo + len(s) - 1} (batched): {t/len(s):.2f} s/user')
        for j in range(min(args.naive_users, len(prompts))):
            r, t = timed(naive_candidate_scores, model, tok, prompts[j], cand_lists[j], **kw); naive_s.append(t); naive_sc.append(r)
            diffs.append(float(np.abs(np.asarray(scores[j]) - r).max()))
            log.info(f'score {norm} user {j}: naive {t:.2f} s')
        agree_s = [rankings_agree(list(zip(range(len(scores[j])), scores[j])), list(zip(range(len(naive_sc[j])), naive_sc[j])), tol, k=20)
                   for j in range(len(naive_sc))]
        res['score'][norm] = {'ours_seconds_per_user': mean(ours_s), 'naive_seconds_per_user': mean(naive_s), 'candidates': args.candidates,
                              'batch_users': args.batch_users, 'ours_users': len(ours_s), 'naive_users': len(naive_s),
                              'max_abs_score_diff': max(diffs) if diffs else None, 'tolerance_nats': tol, 'top20_agrees_with_naive': agree_s}
        for k in ('beam', 'score'):
            r = res[k][norm]
            r['speedup'] = round(r['naive_seconds_per_user']/r['ours_seconds_per_user'], 2) if r['naive_seconds_per_user'] else None
            checks = r['batched_agrees_with_one_user'] + r['ours_top_score_ge_naive'] if k == 'beam' else r['top20_agrees_with_naive'] + [r['max_abs_score_diff'] is not None and r['max_abs_score_diff'] <= tol]
            r['correct'] = bool(checks) and all(checks)
            r['target_met'] = r['correct'] and r['ours_seconds_per_user'] <= TARGET_SECONDS_PER_USER
    save_json(res, args.out)
    print(f"{'task':12} {'ours s/user':>12} {'naive s/user':>13} {'speedup':>8}  target (<= {TARGET_SECONDS_PER_USER} s/user)")
    for k in ('beam', 'score'):
        for norm, r in res[k].items():
            print(f"{k + ' ' + norm:12} {r['ours_seconds_per_user']:12.3f} {r['naive_seconds_per_user'] or float('nan'):13.3f} "
                  f"{r['speedup'] or float('nan'):7.1f}x  {'met' if r['target_met'] else 'NOT met'}")
    print(f'written: {args.out}')
    return res


def max_score_diff(a:list, b:list)->float:
    "Largest score difference over the items two `[(item, score)]` rankings share"
    da, db = dict(a), dict(b)
    common = da.keys() & db.keys()
    return max((abs(da[i] - db[i]) for i in common), default=float('inf'))

def rankings_agree(a:list, b:list, tol:float, k:int|None=None)->bool:
    "Do two `[(item, score)]` rankings agree up to `tol`: items in one top-k only, and pairs ordered differently, within `tol`?"
    a = sorted(a, key=lambda x: -x[1])[:k] if k else list(a)
    b = sorted(b, key=lambda x: -x[1])[:k] if k else list(b)
    if not a or not b: return a == b
    sa, sb = dict(a), dict(b)
    cut_a, cut_b = a[-1][1], b[-1][1]
    for i in sa.keys() - sb.keys():             # in a's list only: it must be a near-tie with b's last item
        if sa[i] - cut_a > tol and len(b) == len(a): return False
    for i in sb.keys() - sa.keys():
        if sb[i] - cut_b > tol and len(b) == len(a): return False
    common = [i for i, _ in a if i in sb]
    rank_b = {i: r for r, (i, _) in enumerate(b)}
    for x in range(len(common)):
        for y in range(x + 1, len(common)):
            i, j = common[x], common[y]
            if rank_b[i] > rank_b[j] and abs(sa[i] - sa[j]) > tol and abs(sb[i] - sb[j]) > tol: return False
    return True


if __name__ == '__main__':
    res = main()
    bad = [f'{k} {n}' for k in ('beam', 'score') for n, r in res[k].items() if not r['correct']]
    if bad: print(f'CORRECTNESS CHECKS FAILED: {bad}'); raise SystemExit(1)
