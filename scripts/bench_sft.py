#!/usr/bin/env python
"""Benchmark our SFT configuration against trl's default `SFTConfig`: tokens/s and peak RSS, same model, same examples.

Both sides train the same model (default: the embedded SmolLM2-135M-Instruct) on the same 200 RecLM-gen SeqRec
examples (ML-100K, popularity teacher), read in the same order (sequential sampling on both sides, so the batches
and their token counts are identical), batch 8, for `--steps` optimizer steps. Each configuration runs in its own
process so its peak resident memory is its own. The first `--warmup` steps are not timed.

Configurations (`--configs`):
- `trl_default`: `SFTConfig(output_dir=..., use_cpu=True)` with trl's defaults: full fine-tuning, bf16 autocast,
  gradient checkpointing, batches padded to their longest example, trl's own loss.
- `trl_bf16_nockpt`, `trl_fp32`: trl's defaults with gradient checkpointing off / in fp32 (for the record).
- `ours`: `reclm_nb.sft` as the pipeline runs it: LoRA (r 8, all linear layers), batches grouped by length (each
  epoch shuffled, then similar lengths batched together), logits only at completion positions, no gradient
  checkpointing, `llm.dtype=auto` (bf16 only on CPUs with native bf16).
- `ours_padding_free`: ours with one concatenated row per batch instead of grouping.
- `ours_fp32`, `ours_bf16`: ours with the dtype forced.

Tokens/s counts real tokens (prompt + completion, no padding) of the timed steps divided by their wall time.

    python scripts/bench_sft.py --out bench_sft.json --threads 2
"""
from __future__ import annotations
import argparse, json, logging, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

log = logging.getLogger('bench_sft')
TARGET = {'ratio_tokens_per_second_min': 2.0}


def make_examples(n:int, seed:int, path:Path):
    "Write `n` SeqRec training examples (popularity teacher, ML-100K) as a saved HF dataset"
    from reclm_nb.sources import load_ml100k
    from reclm_nb.split import leave_one_out
    from reclm_nb.cf import Popularity
    from reclm_nb.tasks import TaskContext, build_examples, to_dataset, unique_titles
    data = load_ml100k()
    sp = leave_one_out(data, window=50)
    ctx = TaskContext(sp, unique_titles(data.items), Popularity().fit(sp))
    ex = build_examples({'seqrec': n}, ctx, 'train', seed=seed)
    to_dataset(ex).save_to_disk(str(path))
    return len(ex)


# ----------------------------------------------------------------------------------------------------------------
# One configuration, in a child process (`--child NAME`): prints `BENCH_RESULT {...}`.
def run_child(args):
    import numpy as np, torch
    from datasets import load_from_disk
    from transformers import TrainerCallback
    torch.set_num_threads(args.threads)
    ds = load_from_disk(args.data).select_columns(['prompt', 'completion'])
    name, out = args.child, tempfile.mkdtemp(prefix=f'bench_sft_{args.child}_')

    class Clock(TrainerCallback):
        def __init__(self): self.times = []
        def on_step_begin(self, *a, **k): self.t = time.perf_counter()
        def on_step_end(self, *a, **k): self.times.append(time.perf_counter() - self.t)
    clock = Clock()
    t_load = time.time()
    if name.startswith('trl'):
        from trl import SFTConfig, SFTTrainer
        from reclm_nb.llm import load_model
        model, tok = load_model(args.model, dtype='fp32', device='cpu', threads=args.threads)
        kw = dict(output_dir=out, use_cpu=True, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                  train_sampling_strategy='sequential', save_strategy='no', report_to=[], disable_tqdm=True, seed=args.seed)
        if name == 'trl_bf16_nockpt': kw['gradient_checkpointing'] = False
        if name == 'trl_fp32': kw['bf16'] = False
        targs = SFTConfig(**kw)
        trainer = SFTTrainer(model=model, args=targs, train_dataset=ds, processing_class=tok, callbacks=[clock])
        setup = {'lora': False, 'bf16': targs.bf16, 'gradient_checkpointing': targs.gradient_checkpointing,
                 'padding_free': targs.padding_free, 'loss': 'trl'}
    else:
        from reclm_nb.core import recipe_config
        from reclm_nb.llm import load_model, add_lora, resolve_dtype
        from reclm_nb.sft import RecSFTTrainer, sft_config, sft_dataset
        dtype = {'ours': 'auto', 'ours_fp32': 'fp32', 'ours_bf16': 'bf16', 'ours_padding_free': 'auto'}[name]
        layout = ['sft.padding_free=true', 'sft.group_by_length=false'] if name == 'ours_padding_free' else []
        cfg = recipe_config('quick', layout + [f'llm.model={args.model}', f'llm.dtype={dtype}', f'sft.batch_size={args.batch_size}',
                                      f'sft.max_steps={args.steps}', f'run.threads={args.threads}', f'run.seed={args.seed}'])
        model, tok = load_model(cfg.llm.model, cfg.llm.dtype, 'cpu', threads=args.threads)
        model.config.use_cache = False
        model = add_lora(model, cfg.llm.lora_r, cfg.llm.lora_alpha, cfg.llm.lora_dropout, cfg.llm.lora_targets)
        ds = sft_dataset([load_from_disk(args.data)], args.seed, args.batch_size if cfg.sft.group_by_length else None)
        targs = sft_config(cfg, out, 'cpu', len(ds))
        targs.eval_strategy, targs.save_strategy, targs.load_best_model_at_end = 'no', 'no', False
        trainer = RecSFTTrainer(model=model, args=targs, train_dataset=ds, processing_class=tok, callbacks=[clock])
        setup = {'lora': True, 'dtype': str(resolve_dtype(cfg.llm.dtype, 'cpu')), 'bf16': targs.bf16,
                 'gradient_checkpointing': targs.gradient_checkpointing, 'padding_free': targs.padding_free,
                 'group_by_length': cfg.sft.group_by_length, 'loss': 'ours'}
    load_s = time.time() - t_load
    lengths = np.asarray([len(x) for x in trainer.train_dataset['input_ids']])
    t0 = time.time()
    trainer.train()
    wall = time.time() - t0
    steps = len(clock.times)
    per_step = [int(lengths[i*args.batch_size:(i+1)*args.batch_size].sum()) for i in range(steps)]
    timed = slice(args.warmup, steps)
    secs, toks = sum(clock.times[timed]), sum(per_step[timed])
    losses = [r['loss'] for r in trainer.state.log_history if 'loss' in r]
    res = {'config': name, **setup, 'threads': torch.get_num_threads(), 'steps': steps, 'timed_steps': len(clock.times[timed]),
           'step_seconds': [round(t, 3) for t in clock.times], 'tokens_per_step': per_step,
           'seconds_per_step': secs / max(1, len(clock.times[timed])), 'tokens_per_second': toks / secs if secs else None,
           'train_wall_seconds': round(wall, 2), 'load_seconds': round(load_s, 2), 'final_logged_loss': losses[-1] if losses else None,
           'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           'trainable_params': sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}
    print('BENCH_RESULT ' + json.dumps(res), flush=True)


def run_config(name:str, args)->dict:
    cmd = [sys.executable, __file__, '--child', name, '--data', args.data, '--model', args.model, '--threads', str(args.threads),
           '--steps', str(args.steps), '--warmup', str(args.warmup), '--batch-size', str(args.batch_size), '--seed', str(args.seed)]
    log.info(f'{name}: training {args.steps} steps')
    p = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {'TQDM_DISABLE': '1'})
    res = [l for l in p.stdout.splitlines() if l.startswith('BENCH_RESULT ')]
    if p.returncode or not res:
        raise RuntimeError(f'{name} failed (exit {p.returncode}):\n' + '\n'.join(p.stderr.splitlines()[-30:]))
    r = json.loads(res[-1][len('BENCH_RESULT '):])
    log.info(f'{name}: {r["seconds_per_step"]:.2f} s/step, {r["tokens_per_second"]:.0f} tokens/s, peak RSS {r["peak_rss_mib"]:.0f} MiB')
    return r


def write_json(obj, path:Path):
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(obj, indent=2)); os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--out', default='bench_sft.json')
    ap.add_argument('--model', default='smollm2-135m-instruct', help="model spec (embedded name, 'tiny', folder, .gguf, hub id)")
    ap.add_argument('--configs', default='trl_default,ours', help='comma-separated: trl_default, trl_bf16_nockpt, trl_fp32, ours, ours_fp32, ours_bf16, ours_padding_free')
    ap.add_argument('--examples', type=int, default=200)
    ap.add_argument('--steps', type=int, default=6, help='optimizer steps per configuration')
    ap.add_argument('--warmup', type=int, default=1, help='first steps not timed')
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--child', help=argparse.SUPPRESS)
    ap.add_argument('--data', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')
    if args.child: return run_child(args)
    if args.warmup >= args.steps: ap.error('--warmup must be below --steps')
    import torch
    from reclm_nb.llm import model_folder, resolve_model
    if resolve_model(args.model)[0] != 'tiny': model_folder(args.model)  # fetch/convert once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        args.data = str(Path(tmp)/'examples')
        n = make_examples(args.examples, args.seed, Path(args.data))
        out = Path(args.out)
        result = {'machine': {'cpu_count': os.cpu_count(), 'platform': platform.platform(), 'python': platform.python_version(),
                              'torch': torch.__version__, 'cpu_capability': torch.backends.cpu.get_cpu_capability(),
                              'avx512_bf16': torch.cpu._is_avx512_bf16_supported(), 'amx': torch.cpu._is_amx_tile_supported()},
                  'args': {k: v for k, v in vars(args).items() if k not in ('child', 'data')}, 'examples': n, 'target': TARGET,
                  'started': time.strftime('%Y-%m-%dT%H:%M:%S'), 'configs': {}}
        for name in [c.strip() for c in args.configs.split(',') if c.strip()]:
            result['configs'][name] = run_config(name, args)
            write_json(result, out)
        c = result['configs']
        if 'trl_default' in c and 'ours' in c:
            result['ratio_tokens_per_second'] = c['ours']['tokens_per_second'] / c['trl_default']['tokens_per_second']
            result['ratio_peak_rss'] = c['ours']['peak_rss_mib'] / c['trl_default']['peak_rss_mib']
            result['target_met'] = result['ratio_tokens_per_second'] >= TARGET['ratio_tokens_per_second_min']
        result['finished'] = time.strftime('%Y-%m-%dT%H:%M:%S')
        write_json(result, out)
    rows = [f'{"config":<16} {"s/step":>7} {"tokens/s":>9} {"peak RSS MiB":>13}']
    for k, r in c.items(): rows.append(f'{k:<16} {r["seconds_per_step"]:7.2f} {r["tokens_per_second"]:9.0f} {r["peak_rss_mib"]:13.0f}')
    if 'ratio_tokens_per_second' in result:
        rows.append(f'ours / trl_default: {result["ratio_tokens_per_second"]:.2f}x tokens/s, {result["ratio_peak_rss"]:.2f}x peak RSS '
                    f'(target >= {TARGET["ratio_tokens_per_second_min"]}x: {"met" if result["target_met"] else "not met"})')
    log.info(f'{args.model}, {n} examples, batch {args.batch_size}, {args.threads} thread(s)\n' + '\n'.join(rows) + f'\nwritten: {out}')


if __name__ == '__main__':
    main()
