"""restream warm fetcher worker.

Imports a fetcher's main.py once, then serves calls like a warm AWS Lambda
environment: module-level state lives on between calls. Frames in on stdin,
answers out on a private copy of the original stdout; fd 1 itself is pointed at
stderr and fd 0 at /dev/null, so nothing the fetcher prints or reads can touch
the protocol. A frame is b"RSW1", the call id (u32 BE), the length (u32 BE) and
a JSON payload (see protocol.rs). Exits at end of input.

Import roots, __file__, the module name and the working folder are the same as
in runner.py (the one-shot runner), so a fetcher behaves the same in both.
"""
import importlib.util
import json
import os
import struct
import sys
import time
import traceback

MAGIC = b"RSW1"


class Context:
    def __init__(self, name, timeout_ms, request_id):
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 128
        self.aws_request_id = request_id
        self.invoked_function_arn = "arn:aws:lambda:local:000000000000:function:" + name
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def read_exactly(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def reap():
    """Collects the processes the backend killed after the last call (no zombies pile up)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def main():
    path = os.path.abspath(sys.argv[1])
    # The protocol's own descriptors (os.dup: not inherited by the fetcher's subprocesses).
    requests = os.dup(0)
    answers = os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    here = os.path.dirname(path)
    name = "restreamables_" + os.path.basename(here)
    module = None
    calls = 0
    while True:
        reap()
        header = read_exactly(requests, 12)
        if header is None or header[:4] != MAGIC:
            return
        call_id, length = struct.unpack(">II", header[4:])
        body = read_exactly(requests, length)
        if body is None:
            return
        calls += 1
        retire = False
        try:
            request = json.loads(body)
            if module is None:
                # Same import roots as a deployed Lambda: the function folder and its
                # vendored packages.
                sys.path[:0] = [here, os.path.join(here, "site-packages")]
                spec = importlib.util.spec_from_file_location("main", path)
                loaded = importlib.util.module_from_spec(spec)
                try:
                    spec.loader.exec_module(loaded)
                except BaseException:
                    # Like a Lambda whose init failed: this call fails, a fresh worker
                    # imports again for the next one.
                    retire = True
                    raise
                module = loaded
            context = Context(name, request["timeout_ms"], "local-%d-%d" % (os.getpid(), calls))
            result = module.lambda_function(request["event"], context)
            text = json.dumps(result)
        except BaseException as e:  # noqa: BLE001 - every failure must become an answer
            traceback.print_exc()
            text = json.dumps({"errorMessage": str(e) or type(e).__name__, "errorType": type(e).__name__})
            if isinstance(e, (SystemExit, KeyboardInterrupt)):
                retire = True
        sys.stderr.flush()
        payload = text.encode("utf-8")
        write_all(answers, MAGIC + struct.pack(">II", call_id, len(payload)) + payload)
        if retire:
            return


main()
