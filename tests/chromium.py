"""Headless Chromium for tests, driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`): no driver,
no websocket library, nothing but Debian's `chromium` package. One tab; `goto`, `js` (evaluate, awaiting promises),
`wait` (poll a JS condition); uncaught page errors are collected in `errors`."""
import fcntl, json, os, select, shutil, subprocess, tempfile, time

CANDIDATES = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')

def find_chromium():
    "Path of a Chromium executable, or None"
    return os.environ.get('CHROMIUM') or next(filter(None, map(shutil.which, CANDIDATES)), None)

def _high(fd:int)->int:
    "`fd` moved to a number >= 10, out of the way of the fds 3 and 4 that Chromium reads and writes"
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new

class Chromium:
    "A headless Chromium with one tab"
    def __init__(self, exe:str, timeout:float=30):
        self.profile = tempfile.mkdtemp(prefix='chromium-test-')
        r_in, self._w = os.pipe()                     # commands: us -> browser fd 3
        self._r, w_out = os.pipe()                    # answers and events: browser fd 4 -> us
        r_in, w_out = _high(r_in), _high(w_out)
        args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
                '--no-default-browser-check', '--disable-extensions', '--remote-debugging-pipe',
                f'--user-data-dir={self.profile}', 'about:blank']
        self.log = open(os.path.join(self.profile, 'stderr.log'), 'w')
        self.proc = subprocess.Popen(['bash', '-c', f'exec "$0" "$@" 3<&{r_in} 4>&{w_out} {r_in}<&- {w_out}>&-', exe, *args],
                                     pass_fds=(r_in, w_out), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(r_in); os.close(w_out)
        self._buf, self._id, self.timeout, self.errors = b'', 0, timeout, []
        target = self.send('Target.createTarget', url='about:blank')['targetId']
        self.session = self.send('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        self.send('Page.enable', tab=True)
        self.send('Runtime.enable', tab=True)

    def _message(self, timeout:float)->dict:
        while b'\0' not in self._buf:
            if not select.select([self._r], [], [], timeout)[0]: raise TimeoutError(f'Chromium did not answer in {timeout}s')
            chunk = os.read(self._r, 1 << 20)
            if not chunk: raise RuntimeError(f'Chromium exited; its log: {self.profile}/stderr.log')
            self._buf += chunk
        msg, self._buf = self._buf.split(b'\0', 1)
        return json.loads(msg)

    def send(self, method:str, tab:bool=False, timeout:float|None=None, **params)->dict:
        "Send one DevTools command (to the tab when `tab`), return its result"
        self._id += 1
        msg = {'id': self._id, 'method': method, 'params': params, **({'sessionId': self.session} if tab else {})}
        os.write(self._w, json.dumps(msg).encode() + b'\0')
        while True:
            r = self._message(timeout or self.timeout)
            if r.get('id') == self._id:
                if 'error' in r: raise RuntimeError(f'{method}: {r["error"]}')
                return r['result']
            if r.get('method') == 'Runtime.exceptionThrown':
                d = r['params']['exceptionDetails']
                self.errors.append(d.get('exception', {}).get('description') or d.get('text'))

    def js(self, expr:str):
        "Value of the JS expression `expr` in the tab (promises awaited)"
        r = self.send('Runtime.evaluate', tab=True, expression=expr, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r: raise RuntimeError(f'{expr}: {r["exceptionDetails"]}')
        return r['result'].get('value')

    def wait(self, expr:str, timeout:float=20):
        "Poll `expr` until it is truthy; return its value"
        end = time.monotonic() + timeout
        while True:
            v = self.js(expr)
            if v or time.monotonic() > end: break
            time.sleep(0.1)
        if not v: raise TimeoutError(f'still falsy after {timeout}s: {expr}')
        return v

    def goto(self, url:str, timeout:float=30):
        "Load `url` and wait until the document and its scripts have loaded"
        self.send('Page.navigate', tab=True, url=url)
        self.wait(f"location.href === {json.dumps(url)} && document.readyState === 'complete'", timeout)

    def close(self):
        try: self.send('Browser.close', timeout=5)
        except Exception: pass
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        for fd in (self._w, self._r): os.close(fd)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self): return self
    def __exit__(self, *exc): self.close()
