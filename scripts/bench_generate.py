#!/usr/bin/env python
"""Benchmark LLM decoding for recommendation: seconds per user, ours vs the naive baseline, same model, same run.

Two measurements on ML-100K with the embedded SmolLM2-135M-Instruct (or `--model`), BIGRec's canonical prompt
(last 10 titles of each test user, the run's system message):

- **beam**: beam-20 decoding constrained to the catalogue (all 1682 quoted titles in a token trie ending in EOS).
  Ours: `generate.constrained_beam_search_batch` as the evaluation runs it (`--batch-users` users per search,
  each prompt encoded once and its KV cache shared by its beams, all live beams of all users in one forward pass
  per step); the one-user `constrained_beam_search` is timed too, for the record. Naive:
  `model.generate(num_beams=20, prefix_allowed_tokens_fn=trie)`, transformers' own beam search with the same trie
  (`generate.hf_constrained_beam_search`). Both return catalogue items; the JSON records how many of the top-20
  agree and whether the best item is the same.
- **score**: log-likelihood of 100 candidate titles per user (the target and 99 seeded random items).
  Ours: `generate.score_candidates` (prompt encoded once, its cache copied to batches of candidates). Naive: one
  full forward pass over prompt + candidate per candidate (`generate.naive_candidate_scores`). The JSON records
  the largest absolute difference between the two score vectors.

The naive sides are slow, so they run on the first `--naive-users` users only; seconds per user are averaged over
the users each side ran. Targets (CPU): ours at most 1 s/user for each.

    python scripts/bench_generate.py --out bench_generate.json --threads 2
"""
from __future__ import annotations
import argparse, json, logging, platform, time
from pathlib import Path

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
    ap.add_argument('--batch-size', type=int, default=16, help='candidates per forward pass (ours)')
    ap.add_argument('--batch-users', type=int, default=8, help='users per batched beam search (ours)')
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(message)s')

    import numpy as np, torch
    from reclm_nb.core import save_json
    from reclm_nb.data import load_ml100k
    from reclm_nb.split import leave_one_out
    from reclm_nb.tasks import unique_titles
    from reclm_nb.llm import load_model, chat_prompt
    from reclm_nb.llmrec import bigrec_messages
    from reclm_nb.generate import (CatalogTrie, constrained_beam_search, constrained_beam_search_batch, hf_constrained_beam_search,
                                   score_candidates, naive_candidate_scores)
    torch.set_num_threads(args.threads)
    data = load_ml100k(); sp = leave_one_out(data, window=50)
    titles = unique_titles(data.items); titles = {i: titles[i] for i in sp.item_ids}
    model, tok = load_model(args.model, dtype=args.dtype, threads=args.threads)
    rng = np.random.default_rng(args.seed)
    users = sorted(rng.choice(len(sp.test), args.users, replace=False).tolist())
    prompts = [chat_prompt(tok, bigrec_messages(titles, sp.test.histories[u])) for u in users]
    t0 = time.time(); trie = CatalogTrie(tok, titles, '"', '"', duplicates='keep'); trie_s = time.time() - t0
    log.info(f'{trie} built in {trie_s:.2f} s; {len(users)} users (naive: {args.naive_users}), {args.threads} threads')

    def timed(fn, *a, **k):
        t = time.perf_counter(); r = fn(*a, **k); return r, time.perf_counter() - t
    constrained_beam_search(model, tok, prompts[0], trie, num_beams=2)   # warm-up (allocations, kernels)
    ours_b, naive_b, single_b, same_b, batch_s = [], [], [], [], 0.0
    for lo in range(0, len(prompts), args.batch_users):
        res, t = timed(constrained_beam_search_batch, model, tok, prompts[lo:lo + args.batch_users], trie, args.num_beams, length_penalty=1.0)
        ours_b += [(r, t/len(res)) for r in res]; batch_s += t
        log.info(f'beam users {lo}..{lo + len(res) - 1} (batched): {t/len(res):.2f} s/user')
    for j, p in enumerate(prompts[:args.naive_users]):
        single_b.append(timed(constrained_beam_search, model, tok, p, trie, args.num_beams, length_penalty=1.0))
        naive_b.append(timed(hf_constrained_beam_search, model, tok, p, trie, args.num_beams, length_penalty=1.0))
        same_b.append([i for i, _ in single_b[-1][0]] == [i for i, _ in ours_b[j][0]])
        log.info(f'beam user {j}: one-user search {single_b[-1][1]:.2f} s, naive {naive_b[-1][1]:.2f} s')
    agree = [len({i for i, _ in o[0]} & {i for i, _ in n[0]}) for o, n in zip(ours_b, naive_b)]
    same_top = [bool(o[0] and n[0] and o[0][0][0] == n[0][0][0]) for o, n in zip(ours_b, naive_b)]
    better = [bool(o[0] and n[0] and o[0][0][1] >= n[0][0][1] - 1e-4) for o, n in zip(ours_b, naive_b)]

    ours_s, naive_s, diffs = [], [], []
    for j, u in enumerate(users):
        target = sp.test.targets[u][0]
        pool = [i for i in sp.item_ids if i != target]
        cands = [target] + [pool[x] for x in rng.choice(len(pool), args.candidates - 1, replace=False)]
        texts = [f'"{titles[c]}"' for c in cands]
        s, t = timed(score_candidates, model, tok, prompts[j], texts, batch_size=args.batch_size); ours_s.append(t)
        if j < args.naive_users:
            r, t = timed(naive_candidate_scores, model, tok, prompts[j], texts); naive_s.append(t)
            diffs.append(float(np.abs(np.asarray(s) - r).max()))
        log.info(f'score user {j}: ours {ours_s[-1]:.2f} s' + (f', naive {naive_s[-1]:.2f} s' if j < args.naive_users else ''))

    mean = lambda xs: float(np.mean(xs)) if xs else None
    res = {
        'machine': {'cpu_count': __import__('os').cpu_count(), 'platform': platform.platform(), 'torch': torch.__version__,
                    'threads': args.threads, 'dtype': str(next(model.parameters()).dtype)},
        'args': vars(args), 'catalogue': len(trie), 'trie_paths': len(trie.paths), 'trie_longest_tokens': trie.max_len,
        'trie_build_seconds': round(trie_s, 3), 'prompt_tokens_mean': mean([len(tok(p).input_ids) for p in prompts]),
        'beam': {'ours_seconds_per_user': mean([t for _, t in ours_b]), 'naive_seconds_per_user': mean([t for _, t in naive_b]),
                 'ours_one_user_seconds_per_user': mean([t for _, t in single_b]), 'batch_users': args.batch_users,
                 'batched_equals_one_user': same_b,
                 'ours_users': len(ours_b), 'naive_users': len(naive_b),
                 'top20_overlap_mean': mean(agree), 'same_top_item': same_top, 'ours_top_score_ge_naive': better},
        'score': {'ours_seconds_per_user': mean(ours_s), 'naive_seconds_per_user': mean(naive_s), 'candidates': args.candidates,
                  'ours_users': len(ours_s), 'naive_users': len(naive_s), 'max_abs_score_diff': max(diffs) if diffs else None},
        'target_seconds_per_user': TARGET_SECONDS_PER_USER,
    }
    for k in ('beam', 'score'):
        r = res[k]
        r['speedup'] = round(r['naive_seconds_per_user']/r['ours_seconds_per_user'], 2) if r['naive_seconds_per_user'] else None
        r['target_met'] = r['ours_seconds_per_user'] <= TARGET_SECONDS_PER_USER
    save_json(res, args.out)
    print(f"{'':6} {'ours s/user':>12} {'naive s/user':>13} {'speedup':>8}  target (<= {TARGET_SECONDS_PER_USER} s/user)")
    for k in ('beam', 'score'):
        r = res[k]
        print(f"{k:6} {r['ours_seconds_per_user']:12.3f} {r['naive_seconds_per_user'] or float('nan'):13.3f} {r['speedup'] or float('nan'):7.1f}x  "
              f"{'met' if r['target_met'] else 'NOT met'}")
    print(f'written: {args.out}')
    return res

if __name__ == '__main__':
    main()
