import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

def cli(*args, cwd=None, env=None, timeout=900):
    "Run the installed `reclm-nb` command; returns the CompletedProcess"
    exe = BIN/'reclm-nb'
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, '-c', 'import sys; from reclm_nb.pipeline import main; sys.exit(main())', *args]
    return subprocess.run(cmd, cwd=cwd, env=env or os.environ.copy(), capture_output=True, text=True, timeout=timeout)

@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "An empty asset cache for this test"
    d = tmp_path/'cache'
    monkeypatch.setenv('RECLM_NB_CACHE', str(d))
    return d
