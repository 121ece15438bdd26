#!/usr/bin/env python3
"""moto's server (DynamoDB, S3, ...) handling one request at a time, for restream's tests.

moto answers requests on several threads, but its DynamoDB transactions are not isolated
from each other: TransactWriteItems backs up whole tables and restores them on a failed
condition, undoing a concurrent writer's committed work. Real DynamoDB applies each request
atomically, so serializing requests here is the faithful model (requests still interleave,
exactly as they would at DynamoDB). Same arguments as `moto_server`.
"""
import threading

from moto import server

_lock = threading.Lock()


class _OneAtATime(server.DomainDispatcherApplication):
    def __call__(self, environ, start_response):
        with _lock:
            return list(super().__call__(environ, start_response))


server.DomainDispatcherApplication = _OneAtATime

if __name__ == "__main__":
    server.main()
