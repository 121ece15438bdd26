#!/usr/bin/env python3
"""minilambda: a tiny, Docker-free stand-in for the AWS Lambda Invoke API.

Front end: POST /2015-03-31/functions/{name}/invocations (what aws-sdk-lambda's
Invoke sends).  Back end: for every function, a private Lambda *Runtime API*
(GET .../runtime/invocation/next, POST .../response, .../error, .../init/error)
on an ephemeral loopback port, served to a real `python -m awslambdaric
<handler>` worker process, so handler errors, timeouts, cold/warm starts and
the error JSON come out the way the AWS Python runtime produces them.

Functions come from an Apex-style layout:
    <root>/project.json                 defaults (runtime, timeout, memory, environment, ...)
    <root>/functions/<name>/function.json  per-function overrides (handler, timeout, environment)
    <root>/functions/<name>/*.py        the code (the worker's cwd / LAMBDA_TASK_ROOT)
Also: ListFunctions (GET /2015-03-31/functions/, paginated with Marker/MaxItems; only the
deployed names), GET /health, and a test control route,
POST /_control/throttle {"function": NAME, "times": N, "retry_after": S}, after which the next
N invocations of NAME answer 429 TooManyRequestsException as Lambda does when throttling, and
POST /_control/rescan, which serves functions added under --root since the start.

Usage: minilambda.py --root DIR [--host 127.0.0.1] [--port 23590] [--python PY] [--page-size N]
Test support for restream (stdlib only, started by the tests on loopback); one worker per
function, invocations serialized.
"""
import argparse, base64, json, os, queue, re, signal, subprocess, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACCOUNT = "123456789012"
REGION = os.environ.get("AWS_REGION", "us-east-1")
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024


class Invocation:
    def __init__(self, event: bytes, fn):
        self.id = str(uuid.uuid4())
        self.event = event
        self.deadline_ms = int((time.time() + fn.timeout) * 1000)
        self.done = threading.Event()
        self.result = None          # bytes
        self.error = None           # bytes (JSON) -> X-Amz-Function-Error: Unhandled
        self.logs = []


class Function:
    def __init__(self, name, cfg, code_dir, python):
        self.name, self.cfg, self.code_dir, self.python = name, cfg, code_dir, python
        self.handler = cfg.get("handler") or "main.handle"   # Apex python default
        self.timeout = float(cfg.get("timeout", 3))
        self.memory = int(cfg.get("memory", 128))
        self.env = dict(cfg.get("environment") or {})
        self.arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        self.lock = threading.Lock()       # one invocation at a time
        self.pending = queue.Queue()       # Invocation objects for /next
        self.current = None
        self.proc = None
        self.init_error = None
        self.log_lines = []
        self.rt_server = ThreadingHTTPServer(("127.0.0.1", 0), make_runtime_handler(self))
        self.rt_server.daemon_threads = True
        threading.Thread(target=self.rt_server.serve_forever, daemon=True).start()

    # -- worker process management -------------------------------------------------
    def ensure_worker(self):
        if self.proc and self.proc.poll() is None:
            return False
        self.init_error = None
        self.pending = queue.Queue()
        env = dict(os.environ)
        env.update({
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.rt_server.server_address[1]}",
            "_HANDLER": self.handler, "LAMBDA_TASK_ROOT": self.code_dir,
            "AWS_LAMBDA_FUNCTION_NAME": self.name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory), "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION, "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local", "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        self.proc = subprocess.Popen([self.python, "-m", "awslambdaric", self.handler], cwd=self.code_dir,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._pump_logs, args=(self.proc,), daemon=True).start()
        return True

    def _pump_logs(self, proc):
        for line in iter(proc.stdout.readline, b""):
            txt = line.decode(errors="replace")
            sys.stderr.write(f"[{self.name}] {txt}")
            if self.current is not None:
                self.current.logs.append(txt)
        proc.stdout.close()

    def kill_worker(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    # -- one invocation ---------------------------------------------------------------
    def invoke(self, event: bytes) -> Invocation:
        with self.lock:
            cold = self.ensure_worker()
            inv = Invocation(event, self)
            self.current = inv
            t0 = time.time()
            self.pending.put(inv)
            # wait for response, error, init error, crash or timeout
            while not inv.done.wait(0.005):
                if self.init_error is not None:
                    inv.error = self.init_error
                    break
                if self.proc.poll() is not None:
                    inv.error = json.dumps({"errorMessage": f"RequestId: {inv.id} Error: Runtime exited with error: exit status {self.proc.returncode}",
                                            "errorType": "Runtime.ExitError"}).encode()
                    break
                if time.time() - t0 > self.timeout:
                    self.kill_worker()
                    inv.error = json.dumps({"errorMessage": f"{time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime())} {inv.id} Task timed out after {self.timeout:.2f} seconds"}).encode()
                    break
            time.sleep(0.002)  # let the log pump catch up
            dur = (time.time() - t0) * 1000
            inv.logs.insert(0, f"START RequestId: {inv.id} Version: $LATEST\n")
            inv.logs.append(f"END RequestId: {inv.id}\n")
            inv.logs.append(f"REPORT RequestId: {inv.id}\tDuration: {dur:.2f} ms\tBilled Duration: {int(dur)+1} ms\t"
                            f"Memory Size: {self.memory} MB\tMax Memory Used: 0 MB" + ("\tInit Duration: 0 ms" if cold else "") + "\n")
            self.current = None
            if self.init_error is not None:      # worker exits after init error; next call cold-starts
                self.kill_worker()
            return inv


def make_runtime_handler(fn: Function):
    class RuntimeAPI(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True   # headers and body go out in separate writes

        def log_message(self, *a):
            pass

        def _reply(self, code, body=b"", headers=None):
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self):
            if self.path.endswith("/runtime/invocation/next"):
                inv = fn.pending.get()         # long poll, as the real Runtime API does
                return self._reply(200, inv.event, {
                    "Content-Type": "application/json", "Lambda-Runtime-Aws-Request-Id": inv.id,
                    "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": fn.arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"})
            self._reply(404)

        def do_POST(self):
            body = self._body()
            m = re.search(r"/runtime/invocation/([^/]+)/(response|error)$", self.path)
            if m:
                inv = fn.current
                if inv is None or inv.id != m.group(1):
                    return self._reply(400, b'{"errorType":"InvalidRequestID"}')
                if m.group(2) == "response":
                    inv.result = body
                else:
                    inv.error = body
                inv.done.set()
                return self._reply(202, b'{"status":"OK"}')
            if self.path.endswith("/runtime/init/error"):
                fn.init_error = body
                return self._reply(202, b'{"status":"OK"}')
            self._reply(404)
    return RuntimeAPI


def load_functions(root, python, skip=()):
    project = {}
    pj = os.path.join(root, "project.json")
    if os.path.exists(pj):
        project = json.load(open(pj))
    fns = {}
    fdir = os.path.join(root, "functions")
    for name in sorted(os.listdir(fdir)):
        d = os.path.join(fdir, name)
        if not os.path.isdir(d) or name.startswith((".", "_")) or name in skip:
            continue
        cfg = {k: v for k, v in project.items() if k not in ("name", "description", "nameTemplate")}
        cfg["environment"] = dict(project.get("environment") or {})
        fj = os.path.join(d, "function.json")
        if os.path.exists(fj):
            own = json.load(open(fj))
            env = own.pop("environment", None) or {}
            cfg.update(own)
            cfg["environment"].update(env)
        # Apex deploys functions as nameTemplate, default "{{.Project.Name}}_{{.Function.Name}}";
        # answer to both the deployed name and the bare directory name.
        tmpl = project.get("nameTemplate") or "{{.Project.Name}}_{{.Function.Name}}"
        deployed = tmpl.replace("{{.Project.Name}}", project.get("name", "")).replace("{{.Function.Name}}", name)
        fn = Function(deployed, cfg, os.path.abspath(d), python)
        fns[deployed] = fn
        fns.setdefault(name, fn)
    return fns


def function_config(fn):
    return {"FunctionName": fn.name, "FunctionArn": fn.arn, "Runtime": fn.cfg.get("runtime", "python3.12"),
            "Handler": fn.handler, "Timeout": int(fn.timeout), "MemorySize": fn.memory,
            "Version": "$LATEST", "PackageType": "Zip"}


def make_front_handler(fns, page_size, rescan):
    throttled = {}            # function name -> (remaining 429s, retry-after seconds)
    throttle_lock = threading.Lock()

    class InvokeAPI(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, fmt, *a):
            sys.stderr.write("[invoke-api] " + fmt % a + "\n")

        def _reply(self, code, body=b"", headers=None):
            self.send_response(code)
            hs = {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}
            hs.update(headers or {})
            for k, v in hs.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _err(self, code, typ, msg):
            self._reply(code, json.dumps({"Type": "User", "message": msg}).encode(), {"x-amzn-ErrorType": typ})

        def do_GET(self):
            from urllib.parse import urlparse, parse_qs
            url = urlparse(self.path)
            if url.path == "/health":
                return self._reply(200, json.dumps({"functions": sorted(fns)}).encode())
            if url.path.rstrip("/") == "/2015-03-31/functions":
                deployed = sorted({fn.name for fn in list(fns.values())})
                q = parse_qs(url.query)
                size = min(int((q.get("MaxItems") or [page_size])[0]), page_size)
                start = int((q.get("Marker") or ["0"])[0])
                page = deployed[start:start + size]
                body = {"Functions": [function_config(fns[name]) for name in page]}
                if start + size < len(deployed):
                    body["NextMarker"] = str(start + size)
                return self._reply(200, json.dumps(body).encode())
            self._err(404, "UnknownOperationException", "Unknown operation")

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(n) if n else b""
            if self.path == "/_control/rescan":
                # Functions added under --root since the start ("deployed" while running).
                added = [name for name, fn in rescan().items() if fns.setdefault(name, fn) is fn]
                return self._reply(200, json.dumps({"added": sorted(added)}).encode())
            if self.path == "/_control/throttle":
                ask = json.loads(payload)
                with throttle_lock:
                    throttled[ask["function"]] = (int(ask.get("times", 1)), str(ask.get("retry_after", 1)))
                return self._reply(200, b"{}")
            m = re.match(r"^/2015-03-31/functions/([^/?]+)/invocations(\?.*)?$", self.path)
            if not m:
                return self._err(404, "UnknownOperationException", "Unknown operation")
            raw = m.group(1)
            from urllib.parse import unquote
            name = unquote(raw).split(":function:")[-1].split(":")[0]
            fn = fns.get(name)
            if fn is None:
                return self._err(404, "ResourceNotFoundException", f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
            with throttle_lock:
                times, retry_after = throttled.get(fn.name, (0, "1"))
                if times > 0:
                    throttled[fn.name] = (times - 1, retry_after)
            if times > 0:
                body = {"Type": "User", "message": "Rate Exceeded.", "retryAfterSeconds": retry_after,
                        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}
                return self._reply(429, json.dumps(body).encode(),
                                   {"x-amzn-ErrorType": "TooManyRequestsException", "Retry-After": retry_after})
            if payload:
                try:
                    json.loads(payload)
                except ValueError:
                    return self._err(400, "InvalidRequestContentException", "Could not parse request body into json: Unexpected character")
            else:
                payload = b"{}"
            typ = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
            if typ == "DryRun":
                return self._reply(204)
            if typ == "Event":
                if len(payload) > 1024 * 1024:
                    return self._err(413, "RequestEntityTooLargeException", "Request must be smaller than 1048576 bytes for the InvokeAsync operation")
                threading.Thread(target=fn.invoke, args=(payload,), daemon=True).start()
                return self._reply(202)
            if typ != "RequestResponse":
                return self._err(400, "InvalidParameterValueException", f"Unsupported invocation type {typ}")
            if len(payload) > MAX_SYNC_PAYLOAD:
                return self._err(413, "RequestEntityTooLargeException", "Request must be smaller than 6291456 bytes for the Invoke operation")
            inv = fn.invoke(payload)
            headers = {"X-Amz-Executed-Version": "$LATEST"}
            if self.headers.get("X-Amz-Log-Type") == "Tail":
                headers["X-Amz-Log-Result"] = base64.b64encode("".join(inv.logs).encode()[-4096:]).decode()
            if inv.error is not None:
                headers["X-Amz-Function-Error"] = "Unhandled"
                return self._reply(200, inv.error, headers)
            return self._reply(200, inv.result or b"null", headers)
    return InvokeAPI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=23590)
    ap.add_argument("--python", default=sys.executable, help="interpreter that has awslambdaric installed")
    ap.add_argument("--page-size", type=int, default=50, help="ListFunctions page size")
    a = ap.parse_args()
    fns = load_functions(a.root, a.python)
    def rescan():
        return load_functions(a.root, a.python, skip=set(fns))

    srv = ThreadingHTTPServer((a.host, a.port), make_front_handler(fns, a.page_size, rescan))
    srv.daemon_threads = True
    sys.stderr.write(f"minilambda on http://{a.host}:{a.port} functions={sorted(fns)}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # so `finally` reaps the workers on plain `kill`
    try:
        srv.serve_forever()
    finally:
        for f in fns.values():
            f.kill_worker()


if __name__ == "__main__":
    main()
