"""restream process-fetcher runner.

Runs a fetcher's main.py the way AWS Lambda would: imports it, calls
lambda_function(event, context) with the event read from stdin, and writes the
JSON result to stdout. Anything the fetcher prints goes to stderr, so it can
never corrupt the response. An exception becomes a Lambda-style error object.
"""
import importlib.util
import json
import os
import sys
import time
import traceback


class Context:
    def __init__(self, name, timeout_ms):
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 128
        self.aws_request_id = "local-%d" % os.getpid()
        self.invoked_function_arn = "arn:aws:lambda:local:000000000000:function:" + name
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main():
    path = os.path.abspath(sys.argv[1])
    timeout_ms = int(sys.argv[2]) if len(sys.argv) > 2 else 30000
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        event = json.load(sys.stdin)
        here = os.path.dirname(path)
        # Same import roots as a deployed Lambda: the function folder and its vendored packages.
        sys.path[:0] = [here, os.path.join(here, "site-packages")]
        spec = importlib.util.spec_from_file_location("main", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        name = "restreamables_" + os.path.basename(here)
        result = module.lambda_function(event, Context(name, timeout_ms))
        text = json.dumps(result)
    except BaseException as e:  # noqa: BLE001 - every failure must become an answer
        traceback.print_exc()
        text = json.dumps({"errorMessage": str(e) or type(e).__name__, "errorType": type(e).__name__})
    out.write(text)
    out.flush()


main()
