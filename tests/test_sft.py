"SFT: a run killed mid-training resumes from its last checkpoint with the same data order; 2 DDP processes on CPU."
import os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from reclm_nb.core import recipe_config, save_config, load_json
from reclm_nb.stages import RunDir, run_stage
from reclm_nb.sft import sft_stage


def _prepared_run(root:Path, *overrides):
    "A smoke run folder with data, split, cf and tasks done (tiny model, fp32, checkpoints every 2 steps)"
    cfg = recipe_config('smoke', ['llm.dtype=fp32', 'sft.eval_steps=2', 'sft.eval_examples=4', 'sft.batch_size=4', 'tasks.epochs=2',
                                  'run.threads=1', *overrides])
    run = RunDir(root)
    run_stage('tasks', cfg, run)
    return cfg, run

def _worker(cfg, run):
    "Start the sft stage in a child process (as the pipeline would), return the Popen"
    cfg_path = save_config(cfg, run.root/'config.yaml')
    code = ('import sys; from reclm_nb.core import load_config, setup_logging; from reclm_nb.stages import RunDir; from reclm_nb.sft import sft_stage; '
            'cfg = load_config(sys.argv[1]); setup_logging(); sft_stage(cfg, RunDir(sys.argv[2]))')
    return subprocess.Popen([sys.executable, '-c', code, str(cfg_path), str(run.root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

def _train_losses(run)->dict:
    return {r['step']: r['loss'] for r in load_json(run.root/'sft'/'log.json') if 'loss' in r}

@pytest.mark.slow
def test_sft_resume_after_kill(tmp_path):
    steps = 12
    cfg, killed = _prepared_run(tmp_path/'killed', f'sft.max_steps={steps}')
    p = _worker(cfg, killed)
    ck = killed.root/'sft'/'checkpoints'
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None and not (ck/'checkpoint-6'/'trainer_state.json').exists(): time.sleep(0.05)
    assert p.poll() is None, 'training finished before it could be killed:\n' + p.stdout.read()[-3000:]
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert not (killed.root/'sft'/'metrics.json').exists()
    # the same stage again picks up from the newest complete checkpoint
    p2 = _worker(cfg, killed); out2 = p2.communicate(timeout=900)[0]
    assert p2.returncode == 0, out2[-3000:]
    m = load_json(killed.root/'sft'/'metrics.json')
    assert m['resumed_from'] in ('checkpoint-6', 'checkpoint-8'), m
    assert m['steps'] == steps
    assert 'resuming from' in out2
    # an uninterrupted run with the same settings trains on the same batches: the same losses step by step
    cfg_u, whole = _prepared_run(tmp_path/'whole', f'sft.max_steps={steps}')
    p3 = _worker(cfg_u, whole); out3 = p3.communicate(timeout=900)[0]
    assert p3.returncode == 0, out3[-3000:]
    a, b = _train_losses(killed), _train_losses(whole)
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    for s in a: assert abs(a[s] - b[s]) <= 1e-3 * max(1.0, abs(b[s])), (s, a[s], b[s])
    assert load_json(killed.root/'sft'/'metrics.json')['best_eval_loss'] == pytest.approx(load_json(whole.root/'sft'/'metrics.json')['best_eval_loss'], rel=1e-3)

@pytest.mark.slow
def test_sft_two_processes_gloo(tmp_path):
    "`accelerate launch` with 2 CPU processes (gloo DDP) trains a few steps and the main process writes the results"
    cfg, run = _prepared_run(tmp_path/'ddp', 'sft.max_steps=3', 'sft.num_processes=2')
    summary = sft_stage(cfg, run)
    m = load_json(run.root/'sft'/'metrics.json')
    assert m['processes'] == 2 and m['steps'] == 3, m
    assert m['examples_seen'] == 3 * 4 * 2  # steps x per-device batch x processes
    assert (run.root/'sft'/'model'/'config.json').exists()
    assert (run.root/'sft'/'accelerate.yaml').exists() 
    assert summary['processes'] == 2
