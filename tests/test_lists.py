"""Reading generated recommendation lists and RecLM-gen's list metrics: parse styles, vague mapping (exact,
distance 3, distance 4), a 100k-title catalogue, and every metric on hand-computed cases."""
import math, random, time

import pytest
from rapidfuzz.distance import Levenshtein

from reclm_nb.ground import parse_list, TitleMatcher, vague_map, read_list, read_titles
from reclm_nb.metrics import ListSample, list_metrics, list_sample, rate_correct

CAT = ['Heap (1995)', 'Heat (1995)', 'Toy Story (1995)', 'Babe (1995)', 'Seven (Se7en) (1995)']
T2I = {t: f'i{k}' for k, t in enumerate(CAT)}


def _reclm_vague_map(titles, all_titles):
    "RecLM-gen's utils/tools.vague_map, transcribed: the first catalogue title within distance 3"
    out = list(titles)
    for i, t in enumerate(out):
        if t in all_titles: continue
        for c in all_titles:
            if Levenshtein.distance(t, c) <= 3:
                out[i] = c
                break
    return out


def test_parse_sft():
    assert parse_list('Heat (1995)\n Babe (1995)') == ['Heat (1995)', 'Babe (1995)']
    assert parse_list('1. Heat (1995)\n 2. Babe (1995)\n\n 3.Toy Story (1995)  \n') == ['Heat (1995)', 'Babe (1995)', 'Toy Story (1995)']
    assert parse_list('A\nB\nC', n=2) == ['A', 'B', 'C']          # sft keeps the whole list (CorrectCount sees it)
    assert parse_list('1) A') == ['1) A']                        # only "N." is a number
    assert parse_list('') == [] and parse_list('\n  \n') == []


def test_parse_general():
    text = ('Here are 3 films:\n1. "Heat (1995)" (Action)\n2. Babe (1995) [Children]\n'
            'Note: great picks\n3. Seven (Se7en) (1995)\n4. Toy Story (1995) (Animation)')
    assert parse_list(text, n=3, style='general') == ['Heat (1995)', 'Babe (1995)', 'Seven (Se7en)']
    assert parse_list(text, n=3, style='general', keep=TitleMatcher(CAT)) == ['Heat (1995)', 'Babe (1995)', 'Seven (Se7en) (1995)']
    assert parse_list(text, style='general', strip_category=False)[1] == 'Babe (1995) [Children]'
    assert len(parse_list(text, style='general')) == 4
    assert parse_list("'1. A (x)\n2. B (y)'", style='general') == ['A', 'B']
    assert parse_list('no list at all', style='general') == []
    with pytest.raises(ValueError, match="style 'x'"): parse_list('a', style='x')


def test_vague_map_distances():
    m = TitleMatcher(CAT)
    q = ['Babe (1995)', 'Tox Stxry (1990)', 'Tox Stxry (1980)']
    assert [Levenshtein.distance(t, 'Toy Story (1995)') for t in q[1:]] == [3, 4]
    assert vague_map(q, m) == ['Babe (1995)', 'Toy Story (1995)', 'Tox Stxry (1980)']   # exact, 3 -> mapped, 4 -> raw
    assert vague_map(q, CAT) == vague_map(q, m)                                         # a plain list works too
    assert vague_map(['Heat (1996)'], m) == ['Heap (1995)']                             # first within 3, as RecLM-gen
    assert vague_map(['Heat (1996)'], TitleMatcher(CAT, pick='nearest')) == ['Heat (1995)']
    assert vague_map(['Tox Stxry (1980)'], m, max_distance=4) == ['Toy Story (1995)']


def test_vague_map_equals_reclm_loop():
    rng = random.Random(1)
    words = ['ab', 'ba', 'abc', 'cab', 'a', 'bb']
    cat = list(dict.fromkeys(' '.join(rng.choices(words, k=rng.randint(1, 3))) for _ in range(300)))
    qs = [' '.join(rng.choices(words, k=rng.randint(1, 3))) + rng.choice(['', 'x', 'xy', 'xyzw']) for _ in range(300)]
    assert vague_map(qs, TitleMatcher(cat, chunk=37)) == _reclm_vague_map(qs, cat)   # many ties: order decides


def test_vague_map_100k_speed():
    rng = random.Random(0)
    words = [''.join(rng.choices('abcdefghijklmnopqrstuvwxyz', k=rng.randint(3, 9))) for _ in range(5000)]
    cat = list(dict.fromkeys(f"{' '.join(rng.choices(words, k=rng.randint(1, 5)))} ({rng.randint(1950, 2020)})"
                             for _ in range(102_000)))[:100_000]
    assert len(cat) == 100_000
    qs = []
    for t in rng.sample(cat, 100):
        s = list(t)
        for _ in range(rng.randint(0, 5)): s[rng.randrange(len(s))] = rng.choice('abcdefghijklmnopqrstuvwxyz')
        qs.append(''.join(s))
    m = TitleMatcher(cat)
    t0 = time.time(); out = vague_map(qs, m); dt = time.time() - t0
    assert dt < 5, f'{dt:.2f} s for 100 titles over 100k'
    for q, o in zip(qs[:10], out[:10]):            # spot-check against the reference loop
        assert o == _reclm_vague_map([q], cat)[0]


def test_read_list():
    m = TitleMatcher(CAT)
    assert read_list('1. Heat (1995)\n 2. Tox Stxry (1990)\n 3. Nothing', 3, m, T2I) == ['i1', 'i2', None]
    assert read_titles('Babe (1995)\n Zorro\n Zorro', 3, m) == ['Babe (1995)', 'Zorro', 'Zorro']
    text = '1. Seven (Se7en) (1995)\n2. Babe (1995) (Children)\n3. Heat (1995) (Action)'
    assert read_list(text, 2, m, T2I, 'general') == ['i4', 'i3']


def test_metrics_counts():
    cat = {'a', 'b', 'c', 'd'}
    s = [ListSample(['a', None, 'a', 'b'], 3, target='b', history=['a']),   # b is 4th: beyond n
         ListSample(['c', 'b'], 2, target='b', history=[]),
         ListSample(['d'], 2, target='d'),
         ListSample([], 2, target='a')]
    m = list_metrics(s, cat)
    assert (m['Count'], m['Empty']) == (3, 1)
    assert m['CorrectCount'] == pytest.approx((0 + 1 + 0) / 3)
    assert m['NonExistRate'] == pytest.approx((1 + 0 + 0) / 3)
    assert m['RepeatRate'] == pytest.approx((1 + 0 + 0) / 3)
    assert m['InHistoryRate'] == pytest.approx((2 + 0) / 3)     # the third sample has no history: it adds nothing
    assert m['Recall'] == pytest.approx((0 + 1 + 1) / 3)
    assert m['MRR'] == pytest.approx((0 + 1/2 + 1) / 3)
    assert m['NDCG'] == pytest.approx((0 + 1/math.log2(3) + 1) / 3)


def test_metrics_categories():
    C = {'a', 'b'}
    lp = ListSample(['a', None, 'c'], 3, category_items=C, rate_kind='LP', category_count=1, baseline=['a', 'c', 'd'])
    ep = ListSample(['a', 'b', 'b'], 3, category_items=C, rate_kind='EP', category_count=2, baseline=['a', 'b', 'b', 'a'])
    mp = ListSample(['c', 'd', 'a'], 3, category_items=C, rate_kind='MP', category_count=2, baseline=[None, 'a', 'b'])
    m = list_metrics([lp, ep, mp])
    assert m['TargetCategoryRate'] == pytest.approx((1 + 3 + 1) / 3)
    assert m['CategoryRateCorrect'] == pytest.approx((0 + 1 + 0) / 3)   # LP 1+1>1; EP |3-2|<=1; MP 1<2
    assert m['SRTargetCategoryRate'] == pytest.approx((1 + 3 + 2) / 3)
    assert m['SRCategoryRateCorrect'] == pytest.approx((1 + 1 + 1) / 3)  # LP: the baseline has no None (RecLM-gen: 0)
    bad_base = ListSample(['c', 'd', 'e'], 3, category_items=C, rate_kind='LP', category_count=1, baseline=['a', None, 'c'])
    assert list_metrics([bad_base])['SRCategoryRateCorrect'] == 0.0      # 1 + its own None > 1
    assert [rate_correct(k, 3, 2, 0) for k in ('MC', 'EC', 'LC')] == [True, True, False]
    assert list_metrics([ListSample(['a', 'x', None], 3, candidates=['a', 'b'])])['NotInCandidateRate'] == 2.0


def test_end_to_end_general():
    m = TitleMatcher(CAT)
    ex = dict(task='category_rate_test', n=3, target='i3', history=['i0'], category='Crime', control='', rate_kind='MP',
              rate_count=2, candidates=[])
    text = 'Sure:\n1. Heap (1995) (Drama)\n2. Heat (1995) (Crime)\n3. Babe (1995) (Family)\n4. Heat (1995) (Crime)'
    texts = read_titles(text, ex['n'], m, 'general')
    items = [T2I.get(t) for t in texts]
    assert items == ['i0', 'i1', 'i3']
    s = list_sample(ex, items, {'Crime': {'i1', 'i4'}}, baseline=['i4', 'i1', 'i2'], texts=texts)
    r = list_metrics([s])
    assert r == {'CorrectCount': 1.0, 'NonExistRate': 0.0, 'RepeatRate': 0.0, 'InHistoryRate': 1.0, 'Recall': 1.0,
                 'MRR': 1/3, 'NDCG': 1/math.log2(4), 'TargetCategoryRate': 1.0, 'CategoryRateCorrect': 0.0,
                 'SRTargetCategoryRate': 2.0, 'SRCategoryRateCorrect': 1.0, 'Count': 1, 'Empty': 0}
