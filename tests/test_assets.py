"Embedded defaults come out of registry wheels with verified sha256; corrupt or missing files are refused with a clear message."
import hashlib
import pytest
from reclm_nb import assets as A

@pytest.mark.network
def test_fetch_verifies_hashes(tmp_cache):
    with pytest.raises(A.AssetError) as e: A.asset_path('ml-100k', fetch=False)
    msg = str(e.value)
    assert str(tmp_cache/'assets'/'ml-100k') in msg and A.ASSETS['ml-100k'].files['ml-100k.inter'] in msg and 'recbole==1.2.1' in msg
    folder = A.asset_path('ml-100k')
    for rel, sha in A.ASSETS['ml-100k'].files.items():
        assert hashlib.sha256((folder/rel).read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in folder.iterdir()) == ['.verified.json', 'ml-100k.inter', 'ml-100k.item', 'ml-100k.user']
    # a file corrupted after the fact is detected (size/mtime changed), and a fresh fetch repairs it
    with open(folder/'ml-100k.item', 'a') as f: f.write('1683\tEvil\t1999\tDrama\n')
    assert any('does not match' in p for p in A.check_asset('ml-100k'))
    with pytest.raises(A.AssetError): A.asset_path('ml-100k', fetch=False)
    assert A.check_asset('ml-100k', A.asset_path('ml-100k')) == []

@pytest.mark.network
def test_files_placed_by_hand_are_accepted(tmp_cache, tmp_path):
    src = A.fetch_asset('ml-100k')
    import shutil
    manual = tmp_path/'manual'
    shutil.copytree(src, manual); (manual/'.verified.json').unlink()
    shutil.rmtree(src); shutil.copytree(manual, src)
    assert A.asset_path('ml-100k', fetch=False) == src

@pytest.mark.network
@pytest.mark.slow
def test_gguf_model_converts_to_safetensors(tmp_cache):
    "The embedded SmolLM2 GGUF becomes a regular HF folder that transformers loads and generates with"
    from transformers import AutoModelForCausalLM, AutoTokenizer
    p = A.model_path('smollm2-135m-instruct')
    assert (p/'model.safetensors').exists() and (p/'config.json').exists()
    tok, m = AutoTokenizer.from_pretrained(p), AutoModelForCausalLM.from_pretrained(p)
    assert sum(x.numel() for x in m.parameters()) > 100_000_000
    ids = tok('The capital of France is', return_tensors='pt')
    out = m.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids['input_ids'].shape[1] + 3
    assert A.model_path('smollm2-135m-instruct') == p  # converted once
