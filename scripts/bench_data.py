#!/usr/bin/env python
"""Benchmark loading MovieLens-100K: `reclm_nb.sources.load_ml100k()` vs a naive pandas reading, same run.

- **ours**: `load_ml100k()` as a user calls it: finds the embedded RecBole atomic files (`asset_path('ml-100k')`,
  a stat check once verified), checks the bytes and every line's field count, builds the items table
  (`Title (Year)` titles, genres, text), reads `ml-100k.inter`, stable-sorts each user's interactions by time,
  and validates the resulting `RecData`.
- **reference**: the straightforward reading of the same `ml-100k.inter`: `pandas.read_csv`, a stable sort by
  (user, timestamp), `groupby(user)` to lists. It does less (no items table, no checks, no timestamps), so ours is
  expected to be slower; the target is ours at most `TARGET_RATIO` times the reference.

Each side runs once untimed (imports, file cache), then `--repeats` times alternately; the JSON records every
time and the median per side, and `ratio` = median ours / median reference. Correctness first: the two sides must
give identical per-user sequences (same users, same items in the same order; MovieLens-100K has many ties within
a second, so this checks that both sorts are stable). If they differ, the benchmark fails: `correct` and
`target_met` are false whatever the speed, and the script exits with status 1. A missed speed target is recorded
(`target_met: false`) but does not change the exit status.

    python scripts/bench_data.py --out bench_data.json --repeats 5
"""
from __future__ import annotations
import argparse, logging, os, platform, statistics, sys, time

log = logging.getLogger('bench_data')
TARGET_RATIO = 2.0


def reference_sequences(folder)->dict:
    "user_id -> item ids in time order (ties: file order), read naively with pandas from `ml-100k.inter`"
    import pandas as pd
    df = pd.read_csv(folder/'ml-100k.inter', sep='\t', dtype={'user_id:token': str, 'item_id:token': str})
    df = df.sort_values(['user_id:token', 'timestamp:float'], kind='stable')
    return df.groupby('user_id:token', sort=False)['item_id:token'].agg(list).to_dict()


def first_difference(ours:dict, ref:dict)->str|None:
    "A short description of the first difference between two sequence dicts, or None if they are equal"
    if ours.keys() != ref.keys():
        odd = sorted(set(ours) ^ set(ref))[:3]
        return f'different users: {len(ours)} vs {len(ref)} (e.g. {odd})'
    for u in ours:
        if ours[u] != ref[u]:
            n = next((k for k, (a, b) in enumerate(zip(ours[u], ref[u])) if a != b), min(len(ours[u]), len(ref[u])))
            return f'user {u!r}: first difference at position {n} (ours {ours[u][n:n+3]}, reference {ref[u][n:n+3]}; lengths {len(ours[u])}, {len(ref[u])})'
    return None


def main(argv=None)->int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--out', default='bench_data.json', help='JSON results (written atomically)')
    ap.add_argument('--repeats', type=int, default=5, help='timed runs per side (the median is reported)')
    ap.add_argument('--target-ratio', type=float, default=TARGET_RATIO, help='target: median ours / median reference at most this')
    args = ap.parse_args(argv)
    if args.repeats < 1: ap.error('--repeats must be >= 1')
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(message)s')

    import numpy as np, pandas as pd, pyarrow as pa
    from reclm_nb.assets import asset_path
    from reclm_nb.core import save_json
    from reclm_nb.sources import load_ml100k
    folder = asset_path('ml-100k')

    ours, ref = load_ml100k(), reference_sequences(folder)   # warm-up, and the outputs compared
    diff = first_difference(ours.sequences, ref)
    if diff: log.error(f'the sequences differ: {diff}')
    else: log.info(f'sequences identical: {ours.n_users} users, {ours.n_interactions} interactions')

    times = {'ours': [], 'reference': []}
    for k in range(args.repeats):
        t = time.perf_counter(); load_ml100k(); times['ours'].append(time.perf_counter() - t)
        t = time.perf_counter(); reference_sequences(folder); times['reference'].append(time.perf_counter() - t)
        log.info(f"repeat {k + 1}/{args.repeats}: ours {times['ours'][-1]:.3f} s, reference {times['reference'][-1]:.3f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med['ours'] / med['reference']
    correct = diff is None
    res = {
        'machine': {'cpu_count': os.cpu_count(), 'affinity': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
                    'load_average': list(os.getloadavg()) if hasattr(os, 'getloadavg') else None,
                    'platform': platform.platform(), 'processor': platform.processor() or platform.machine(),
                    'python': platform.python_version(), 'numpy': np.__version__, 'pandas': pd.__version__, 'pyarrow': pa.__version__},
        'args': vars(args), 'dataset': {'folder': str(folder), 'n_users': ours.n_users, 'n_items': ours.n_items,
                                        'n_interactions': ours.n_interactions},
        'seconds': {k: [round(x, 4) for x in v] for k, v in times.items()},
        'ours_seconds': round(med['ours'], 4), 'reference_seconds': round(med['reference'], 4),
        'ratio': round(ratio, 3), 'target_ratio_max': args.target_ratio,
        'correct': correct, 'difference': diff, 'target_met': correct and ratio <= args.target_ratio,
    }
    save_json(res, args.out)
    print(f"{'side':10} {'median s':>9}  (of {args.repeats})")
    print(f"{'ours':10} {med['ours']:9.3f}\n{'reference':10} {med['reference']:9.3f}")
    print(f"ratio ours/reference {ratio:.2f} (target <= {args.target_ratio}): {'met' if res['target_met'] else 'NOT met'}"
          f"{'' if correct else '; the sequences DIFFER: ' + diff}")
    print(f'written: {args.out}')
    return 0 if correct else 1


if __name__ == '__main__':
    sys.exit(main())
