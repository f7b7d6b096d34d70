"Install reclm_nb from `settings.ini` (nbdev 2 layout); the stage notebooks ship inside the package."
import shutil
from configparser import ConfigParser
from pathlib import Path

import setuptools
from packaging.version import Version
from setuptools.command.build_py import build_py

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
for k in 'version description keywords author author_email license min_python lib_name user git_url'.split():
    assert k in cfg, f'settings.ini is missing the field `{k}`'
Version(cfg['version'])  # fails early on a malformed version string

licenses = {'apache2': 'Apache-2.0'}  # SPDX expression
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()
min_python = cfg['min_python']
req = lambda k: cfg.get(k, '').split()

class BuildWithNotebooks(build_py):
    "Copy `nbs/*.ipynb` into the built package as `reclm_nb/nbs`, so `reclm-nb run` works from a wheel"
    def run(self):
        super().run()
        dest = Path(self.build_lib)/cfg['lib_name']/'nbs'
        dest.mkdir(parents=True, exist_ok=True)
        for nb in sorted((here/'nbs').glob('*.ipynb')): shutil.copy2(nb, dest/nb.name)

setuptools.setup(
    name=cfg['lib_name'].replace('_', '-'),
    license=licenses[cfg['license']],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()] +
                ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    include_package_data=True,
    install_requires=req('requirements'),
    extras_require={'dev': req('dev_requirements'), 'vllm': req('vllm_requirements')},
    python_requires='>=' + min_python,
    long_description=(here/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': req('console_scripts'), 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    cmdclass={'build_py': BuildWithNotebooks},
    version=cfg['version'],
    description=cfg['description'],
    keywords=cfg['keywords'],
    author=cfg['author'],
    author_email=cfg['author_email'],
)
