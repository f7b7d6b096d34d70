"GRPO (trl) on a tiny random model: constrained sampling keeps every rollout inside the catalogue; budget stop and exact resume."
import numpy as np
import torch

import reclm_nb.grpo as grpo
from reclm_nb.cf import Popularity
from reclm_nb.core import recipe_config, load_json
from reclm_nb.decode import parse_list
from reclm_nb.llm import tiny_model, chat_messages, save_model
from reclm_nb.rl import RewardContext
from reclm_nb.sources import load_ml100k
from reclm_nb.tasks import unique_titles

torch.set_num_threads(1)
TITLES = dict(list(unique_titles(load_ml100k().items).items())[:50])
IDS = list(TITLES)

def _ctx():
    teacher = Popularity(IDS); teacher.counts = np.linspace(1, 0, len(IDS))
    return RewardContext({t: i for i, t in TITLES.items()}, {}, teacher)

def _example(u, n, part='train'):
    h = IDS[u:u + 3]
    return dict(prompt=chat_messages(f'The user watched {", ".join(TITLES[i] for i in h)}. Recommend {n} movies, one per line.', 'You are a recommender.'),
                completion=[{'role': 'assistant', 'content': ''}], task='rl_seqrec', template=0, part=part, user_id=str(u), history=h,
                target=IDS[u + 3], label_items=[], n=n, category='', control='', rate_kind='', rate_count=-1, candidates=[])

def _cfg(*extra):
    return recipe_config('smoke', ['llm.dtype=fp32', 'llm.device=cpu', 'run.threads=1', 'rl.batch_size=2', 'rl.num_generations=2',
                                   'rl.max_new_tokens=12', 'rl.eval_steps=1', 'rl.save_steps=1', 'rl.lr=1e-3', *extra])

def _sft(tmp_path):
    model, tok = tiny_model(); save_model(model, tok, tmp_path/'sft'); return str(tmp_path/'sft')

def test_grpo_constrained_rollouts(tmp_path, monkeypatch):
    seen = []
    def spy(texts, examples, ctx):
        seen.extend(zip(texts, examples)); return grpo_score(texts, examples, ctx)
    grpo_score = grpo.score_completions
    monkeypatch.setattr(grpo, 'score_completions', spy)
    train = [_example(u, 1 + u % 3) for u in range(4)]
    m = grpo.train_grpo(_cfg('rl.max_steps=2', 'rl.constrained=true'), 'test', _sft(tmp_path), train, [_example(20, 2, 'valid')], _ctx(), tmp_path/'grpo')
    assert m['steps'] == 2 and m['constrained'] and m['rollouts_per_prompt'] == 2
    assert len(seen) == 2 * 2 * 2                                   # 2 steps x 2 prompts x 2 completions
    for text, ex in seen:
        lines = parse_list(text)
        assert 1 <= len(lines) <= ex['n'], (text, ex['n'])
        assert all(l in TITLES.values() for l in lines[:-1]) and any(t.startswith(lines[-1]) for t in TITLES.values()), text   # 12 tokens may cut the last
        assert not {TITLES[i] for i in ex['history']} & set(lines), text
    curve = load_json(tmp_path/'grpo'/'curve.json')
    assert [r['step'] for r in curve] == [0, 1, 2] and set(curve[1]) == {'step', 'reward', 'kl', 'val_reward'}
    assert curve[1]['reward'] is not None and all(r['val_reward'] is not None for r in curve)
    for f in ('adapter/adapter_config.json', 'model/config.json', 'metrics.json', 'log.json'): assert (tmp_path/'grpo'/f).exists(), f

def test_grpo_budget_then_resume(tmp_path):
    sft, train, valid = _sft(tmp_path), [_example(u, 2) for u in range(4)], [_example(20, 2, 'valid')]
    m1 = grpo.train_grpo(_cfg('rl.max_steps=3', 'rl.max_seconds=0.001'), 'test', sft, train, valid, _ctx(), tmp_path/'grpo')
    assert m1['stopped_by_budget'] and m1['steps'] == 1
    assert (tmp_path/'grpo'/'checkpoints'/'checkpoint-1'/'clock.json').exists()
    m2 = grpo.train_grpo(_cfg('rl.max_steps=3'), 'test', sft, train, valid, _ctx(), tmp_path/'grpo')
    assert m2['resumed_from'] == 'checkpoint-1' and m2['steps'] == 3 and not m2['stopped_by_budget']
    assert m2['train_seconds'] >= m1['train_seconds']
    assert [r['step'] for r in load_json(tmp_path/'grpo'/'curve.json')] == [0, 1, 2, 3]
