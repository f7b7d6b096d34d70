#!/usr/bin/env python
"""Benchmark item indexing: the RQ-VAE and its codes, and decoding over semantic IDs against decoding over titles.

1. **RQ-VAE** (`reclm_nb.rqvae`), each case in its own process so its peak RSS is its own:
   - ML-100K: the 1,682 items' MiniLM vectors (title and text), the index stage's defaults (4 levels x 256 codes,
     200 epochs, dead-code restarts) and LC-Rec's own recipe (no restarts);
   - a synthetic catalogue of `--synthetic-items` (default 100,000) vectors of dimension 384 drawn around 2,000
     random centres, `--synthetic-epochs` epochs.
   Each reports training seconds per epoch, the collision rate of the raw codes and after `assign_codes` (the
   final one must be 0: a case with any collision fails), and per level the codes used and the normalised
   entropy of the code distribution (1 = uniform, Sinkhorn's point), and the peak RSS.
2. **Beam-20 over semantic IDs vs over titles**, same model (the embedded SmolLM2-135M-Instruct, or `--model`),
   same run, same users: `constrained_beam_search_batch` over the trie of the ML-100K index strings
   (`<a_12><b_5><c_1><d_9>`, added to the tokenizer as single tokens) answering LC-Rec's seqrec prompt, and over
   the trie of the quoted titles answering BIGRec's prompt. Seconds per user and the ratio titles / IDs; checks:
   every beam a real item, `num_beams` distinct items per user.
3. **LC-Rec's per-level constraint**: the same ID prompts decoded as LC-Rec decodes them, by `model.generate` with
   beam search where step i may emit any token seen at level i of some item (EOS only after the last level): how
   many of the returned beams name no item. Ours (the trie) can return none.

By default the model in 2 and 3 is not fine-tuned: speed depends on the trie and the prompt, not on what the model
learned, and the invalid-beam count shows what the per-level constraint allows. With `--model` a fine-tuned model
and `--index` the index it was trained on (the `lcrec` recipe's), the count is what LC-Rec's decoder would emit for
that model.

    python scripts/bench_index.py --out bench_index.json
    python scripts/bench_index.py --synthetic-items 20000 --users 4 --out /tmp/b.json   # quicker
"""
from __future__ import annotations
import argparse, json, logging, os, platform, subprocess, sys, time
from pathlib import Path

log = logging.getLogger('bench_index')


def _cpu() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def _synthetic(n: int, d: int = 384, centres: int = 2000, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)).astype(np.float32)
    x = c[rng.integers(centres, size=n)] + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rqvae_case(name: str, args) -> dict:
    "One RQ-VAE case (run in a child process): train, assign codes, measure"
    import torch
    from reclm_nb.rqvae import train_rqvae, assign_codes, collision_rate, code_usage
    torch.set_num_threads(args.threads)
    if name.startswith('ml100k'):
        from reclm_nb.sources import load_ml100k
        from reclm_nb.embed import cached_item_embeddings
        emb = cached_item_embeddings(load_ml100k().items, Path(args.cache)/'ml100k-minilm')
        epochs, restart = args.epochs, name == 'ml100k'
    else:
        emb, epochs, restart = _synthetic(args.synthetic_items), args.synthetic_epochs, True
    t0 = time.time()
    res = train_rqvae(emb, epochs=epochs, eval_every=max(1, epochs // 10), restart_dead=restart, show_progress=False, seed=args.seed)
    train_s = time.time() - t0
    raw = res.model.codes(torch.as_tensor(emb))[0].numpy()
    t1 = time.time(); codes = assign_codes(res.model, emb); assign_s = time.time() - t1
    return {'items': int(len(emb)), 'dim': int(emb.shape[1]), 'epochs': res.history[-1]['epoch'], 'restart_dead': restart,
            'seconds_per_epoch': round(train_s / max(1, res.history[-1]['epoch']), 4), 'train_seconds': round(train_s, 2),
            'assign_seconds': round(assign_s, 2), 'kept_epoch': res.best_epoch, 'loss': round(res.best()['loss'], 6),
            'collision_rate_raw': round(collision_rate(raw), 5), 'collision_rate_final': collision_rate(codes),
            'levels_final': int(codes.shape[1]), 'code_usage': code_usage(codes[:, :res.model.levels], res.model.n_codes)}


def run_case(name: str, argv: list) -> dict:
    "`rqvae_case` in a child process, with that process's peak RSS"
    p = subprocess.Popen([sys.executable, __file__, '--case', name, *argv], stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    line = next((l for l in out.splitlines() if l.startswith('CASE ')), None)
    if os.waitstatus_to_exitcode(status) != 0 or line is None: return {'ok': False, 'error': f'case {name} failed (exit {os.waitstatus_to_exitcode(status)})'}
    r = json.loads(line[5:])
    r['peak_rss_mib'] = round(usage.ru_maxrss / 1024, 1)
    r['ok'] = r['collision_rate_final'] == 0.0
    return r


def decoding(args) -> dict:
    "Beam-20 over IDs vs titles, and LC-Rec's per-level constraint"
    import torch
    from reclm_nb.sources import load_ml100k
    from reclm_nb.split import leave_one_out
    from reclm_nb.tasks import unique_titles
    from reclm_nb.embed import cached_item_embeddings
    from reclm_nb.rqvae import train_rqvae, assign_codes, code_tokens, load_lcrec_index
    from reclm_nb.llm import load_model, add_tokens, chat_prompt
    from reclm_nb.llmrec import bigrec_messages
    from reclm_nb.lcrec_tasks import LCREC_SEQREC
    from reclm_nb.trie import CatalogTrie
    from reclm_nb.decode import constrained_beam_search_batch, prompt_ids
    torch.set_num_threads(args.threads)
    data = load_ml100k(); sp = leave_one_out(data, window=50)
    titles = unique_titles(data.items); titles = {i: titles[i] for i in sp.item_ids}
    if args.index: codes = load_lcrec_index(args.index)          # the index a fine-tuned --model learned
    else:
        emb = cached_item_embeddings(data.items, Path(args.cache)/'ml100k-minilm')
        res = train_rqvae(emb, epochs=args.epochs, eval_every=max(1, args.epochs // 10), restart_dead=True, show_progress=False, seed=args.seed)
        codes = dict(zip([str(i) for i in data.items.item_id], code_tokens(assign_codes(res.model, emb))))
    ids = {i: ''.join(codes[i]) for i in sp.item_ids}
    model, tok = load_model(args.model, dtype='fp32', device='cpu', threads=args.threads)
    add_tokens(model, tok, sorted({t for v in codes.values() for t in v}), special=False)
    model.eval()
    users = list(range(args.users))
    hist = [sp.test.histories[u][-10:] for u in users]
    id_prompts = [chat_prompt(tok, [{'role': 'user', 'content': LCREC_SEQREC[0].format(history=', '.join(ids[i] for i in h))}]) for h in hist]
    title_prompts = [chat_prompt(tok, bigrec_messages(titles, h)) for h in hist]
    tries = {'ids': CatalogTrie(tok, ids), 'titles': CatalogTrie(tok, titles, prefix='"', suffix='"', duplicates='keep')}
    out, B = {}, args.batch_users
    for name, prompts in (('ids', id_prompts), ('titles', title_prompts)):
        trie, beams, t0 = tries[name], [], time.time()
        with torch.no_grad():
            for lo in range(0, len(prompts), B):
                beams += constrained_beam_search_batch(model, tok, prompts[lo:lo + B], trie, args.num_beams, length_penalty=0.0)
        secs = (time.time() - t0) / len(prompts)
        real = set(trie.items) if hasattr(trie, 'items') else {i for v in trie.paths.values() for i in v}
        ok = all(len({i for i, _ in b}) == args.num_beams and all(i in real for i, _ in b) for b in beams)
        out[name] = {'seconds_per_user': round(secs, 4), 'tokens_per_item_max': trie.max_len, 'ok': ok}
    out['speedup_titles_over_ids'] = round(out['titles']['seconds_per_user'] / out['ids']['seconds_per_user'], 2)
    # LC-Rec's decoder: position i may hold any token of level i, EOS only after the last level
    levels = max(len(v) for v in codes.values())
    per_level = [sorted({tok.convert_tokens_to_ids(v[l]) for v in codes.values() if len(v) > l}) for l in range(levels)]
    valid = set(ids.values())
    invalid, total, t0 = 0, 0, time.time()
    for p in id_prompts[:args.per_level_users]:
        x = torch.tensor([prompt_ids(tok, p)]); n = x.shape[1]
        allowed = lambda _, seq: per_level[len(seq) - n] if len(seq) - n < levels else [tok.eos_token_id]
        with torch.no_grad():
            g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), num_beams=args.num_beams, num_return_sequences=args.num_beams,
                               max_new_tokens=levels + 1, do_sample=False, prefix_allowed_tokens_fn=allowed, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id)
        for row in g[:, n:]:
            s = tok.decode([t for t in row.tolist() if t not in (tok.eos_token_id, tok.pad_token_id)])
            invalid += s not in valid; total += 1
    out['lcrec_per_level'] = {'users': min(args.per_level_users, len(id_prompts)), 'beams': total, 'invalid_beams': invalid,
                              'invalid_share': round(invalid / max(total, 1), 4), 'seconds_per_user': round((time.time() - t0) / max(1, min(args.per_level_users, len(id_prompts))), 4),
                              'ours_invalid_beams': 0}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('--out', default='bench_index.json')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--epochs', type=int, default=200, help='RQ-VAE epochs on ML-100K')
    ap.add_argument('--synthetic-items', type=int, default=100_000)
    ap.add_argument('--synthetic-epochs', type=int, default=5)
    ap.add_argument('--model', default='smollm2-135m-instruct')
    ap.add_argument('--index', help="an LC-Rec index.json to decode over (e.g. runs/lcrec/index/index.json with --model runs/lcrec/sft/model); default: train one")
    ap.add_argument('--users', type=int, default=16, help='test users decoded in part 2')
    ap.add_argument('--per-level-users', type=int, default=8, help='users decoded with LC-Rec per-level constraint (part 3)')
    ap.add_argument('--num-beams', type=int, default=20)
    ap.add_argument('--batch-users', type=int, default=8)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--cache', default=str(Path.home()/'.cache'/'reclm_nb'/'bench_index'))
    ap.add_argument('--case', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(message)s')
    if args.case:
        print('CASE ' + json.dumps(rqvae_case(args.case, args)), flush=True); return 0
    from reclm_nb.core import save_json
    passthrough = ['--threads', str(args.threads), '--epochs', str(args.epochs), '--synthetic-items', str(args.synthetic_items),
                   '--synthetic-epochs', str(args.synthetic_epochs), '--seed', str(args.seed), '--cache', args.cache]
    t0 = time.time()
    rq = {name: run_case(name, passthrough) for name in ('ml100k', 'ml100k-lcrec', 'synthetic')}
    for k, v in rq.items(): log.info(f'{k}: {v}')
    dec = decoding(args)
    log.info(f'decoding: {dec}')
    ok = all(v.get('ok') for v in rq.values()) and dec['ids']['ok'] and dec['titles']['ok']
    save_json({'ok': ok, 'rqvae': rq, 'decoding': dec, 'seconds': round(time.time() - t0, 1),
               'machine': {'cpu': _cpu(), 'threads': args.threads, 'python': platform.python_version()},
               'protocol': {'ml100k': 'MiniLM vectors of title + text, 4 x 256 codes, Sinkhorn on the last level (eps 0.003)',
                            'synthetic': f'{args.synthetic_items} unit vectors of dim 384 around 2000 random centres (noise 0.3)',
                            'decoding': f'{args.users} ML-100K test users, last 10 items, beam {args.num_beams}, length penalty 0, fp32, '
                                        f'{args.batch_users} users per search; IDs answer LC-Rec seqrec template 0, titles BIGRec\'s prompt; '
                                        f'model {args.model}, index {args.index or "trained here"}'}},
              args.out)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
