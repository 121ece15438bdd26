#!/usr/bin/env python3
"""moto's server (DynamoDB, S3, ...) handling one request at a time, for restream's tests.

moto answers requests on several threads, but its DynamoDB transactions are not isolated
from each other: TransactWriteItems backs up whole tables and restores them on a failed
condition, undoing a concurrent writer's committed work. Real DynamoDB applies each request
atomically, so serializing requests here is the faithful model (requests still interleave,
exactly as they would at DynamoDB). Same arguments as `moto_server`.
"""
import collections
import copy
import os
import sys
import threading
import time

from moto import server


class _FairLock:
    """Requests are served in arrival order: a plain Lock lets a busy client starve others
    (a replica's lease renewal waited seconds behind other replicas' transactions)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self):
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()

    def __exit__(self, *exc):
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


_lock = _FairLock()


_TRACE = os.environ.get("MOTO_TRACE_REQUESTS") == "1"


class _OneAtATime(server.DomainDispatcherApplication):
    def __call__(self, environ, start_response):
        arrived = time.monotonic()
        with _lock:
            started = time.monotonic()
            out = list(super().__call__(environ, start_response))
        if _TRACE:
            # MOTO_TRACE_REQUESTS=1: one line per request (operation, queued ms, served ms).
            target = environ.get("HTTP_X_AMZ_TARGET", environ.get("PATH_INFO", ""))
            done = time.monotonic()
            print(f"trace {target} {1000 * (started - arrived):.1f} {1000 * (done - started):.1f}",
                  file=sys.stderr, flush=True)
        return out


server.DomainDispatcherApplication = _OneAtATime


class _TableBackup:
    """Stands in for the `copy` module inside moto's TransactWriteItems, which deep-copies every
    table it touches to roll back a failed transaction: O(table size), ~100 ms per transaction
    once a table holds a thousand records. Put, Delete and ConditionCheck only add, replace or
    remove entries of `table.items`, so copying that dict two levels deep restores it just as
    well. Transactions with an Update keep moto's own deep copy."""

    @staticmethod
    def deepcopy(table):
        clone = copy.copy(table)
        items = collections.defaultdict(dict)
        for hash_key, entry in table.items.items():
            items[hash_key] = dict(entry) if isinstance(entry, dict) else entry
        clone.items = items
        return clone


def _patch_transactions():
    from moto.dynamodb import models

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        if any("Update" in item for item in transact_items):
            return original(self, transact_items)
        real_copy = models.copy
        models.copy = _TableBackup  # requests are served one at a time (see _OneAtATime)
        try:
            return original(self, transact_items)
        finally:
            models.copy = real_copy

    models.DynamoDBBackend.transact_write_items = transact_write_items


_patch_transactions()

if __name__ == "__main__":
    server.main()
