"The GPU-sized RecLM-gen recipe, end to end on a device (skipped without CUDA): SFT, PPO and GRPO on the GPU, vLLM generation when installed."
import importlib.util, json, os
import pytest

from conftest import cli

torch = pytest.importorskip('torch')
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]

# the device machine reaches no model hub: RECLM_NB_GPU_MODEL names a local folder or an embedded model
MODEL = os.environ.get('RECLM_NB_GPU_MODEL', 'smollm2-135m-instruct')


def test_reclmgen_gpu_recipe(tmp_path):
    backend = 'vllm' if importlib.util.find_spec('vllm') else 'hf'
    small = ['tasks.train={seqrec: 64, control: 32, category_rate: 16, control_re: 16}', 'tasks.test_users=16', 'tasks.valid_users=8',
             'tasks.rl_train={rl_seqrec: 16, rl_control+: 8, rl_control-: 8}', 'tasks.epochs=1', 'tasks.rl_epochs=1',
             'sft.max_steps=8', 'rl.max_steps=4', 'rl.eval_steps=2', 'rl.eval_examples=8', 'rl.save_steps=2', 'cf.params.sasrec.epochs=5',
             f'llm.model={MODEL}', f'eval.backend={backend}']
    args = ['run', 'reclmgen-gpu', '--out', str(tmp_path), '--no-progress'] + [x for s in small for x in ('--set', s)]
    r = cli(*args, timeout=3000)
    assert r.returncode == 0, r.stderr[-4000:]
    run = tmp_path/'reclmgen-gpu'
    report = (run/'report.md').read_text()
    assert '## RecLM-gen tasks (test)' in report and 'SFT+PPO' in report and 'SFT+GRPO' in report
    info = json.loads((run/'rl'/'info.json').read_text())
    assert info['ppo']['steps'] == 4 and info['grpo']['steps'] == 4
    meta = json.loads((run/'generate'/'sft'/'list.meta.json').read_text())
    assert meta['backend'] == backend and meta['device'] in ('cuda', None)
