"The pipeline works from an installed wheel, not only from the checkout: the stage notebooks ship inside it."
import os, subprocess, sys, zipfile
import pytest
from conftest import ROOT

@pytest.mark.slow
def test_wheel_ships_notebooks_and_runs(tmp_path):
    wheels = tmp_path/'wheels'
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(wheels), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    whl = next(wheels.glob('reclm_nb-*.whl'))
    names = zipfile.ZipFile(whl).namelist()
    for nb in ('02_data', '03_split', '05_cf', '15_evaluate'): assert f'reclm_nb/nbs/{nb}.ipynb' in names
    site = tmp_path/'site'
    r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(site), str(whl)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path/'elsewhere'; work.mkdir()
    env = os.environ | {'PYTHONPATH': str(site)}
    code = ('import sys, reclm_nb, reclm_nb.pipeline as p; assert str(reclm_nb.__file__).startswith(sys.argv[1]), reclm_nb.__file__; '
            'assert str(p.notebooks_dir()).startswith(sys.argv[1]); sys.exit(p.main(["run", "smoke", "--out", "runs", "--no-progress", "--set", "data.max_users=40"]))')
    r = subprocess.run([sys.executable, '-c', code, str(site)], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work/'runs'/'smoke'/'report.md').exists() and (work/'runs'/'smoke'/'results.png').exists()
