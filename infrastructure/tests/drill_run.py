"""The deploy drill playing ECS and the load balancer around the tasks: tasks and clients that
are always stopped, the load balancer's delay before a new task gets clients, clients spread
over the tasks' Pushpins (and moved when theirs goes away).
"""
import json
import os
import subprocess

import drill_clients
from drill_clients import get, wait_until


class Running:
    """Started tasks and clients, all stopped at the end whatever happens."""

    def __init__(self):
        self.tasks, self.subscribers = [], drill_clients.Subscribers()

    def start(self, task, ready):
        self.tasks.append(task)
        task.start(ready)
        return task

    def close(self):
        self.subscribers.close()
        for task in self.tasks:
            task.stop()
            task.kill()


def lease_ttl(task):
    proc = task["backend"].popen([task["backend"].command[0], "config"], stdout=subprocess.PIPE)
    return json.loads(proc.communicate(timeout=30)[0])["cluster"]["lease_ttl_secs"]


def routed(deployment, tasks):
    """When the load balancer sends clients to a new task. By default as on AWS: only once the
    target health check has passed healthy_threshold times (`alb_delay`), longer than a lease
    TTL, so every replica publishes to every task's Pushpin by then.
    RESTREAM_DRILL_LB_DELAY=0 is the stricter stress mode: clients reach a new task at once,
    before the other replicas know its Pushpin (their next membership refresh is up to a third
    of a lease TTL away); the snapshot hand-over makes each channel's owner meet the new
    replica and answer its clients privately whatever it broadcast before. Measured: 69 of 70
    runs pass in that mode; the one failure was an event delivered twice to a client resuming
    on another task, two seqs past its `since` (not explained; clients drop a seq they hold)."""
    if os.environ.get("RESTREAM_DRILL_LB_DELAY", "alb") == "0":
        return
    assert deployment.alb_delay > lease_ttl(tasks[0]), "a task gets clients before the replicas know it"
    wait_until(f"every replica publishing to the {len(tasks)} tasks' Pushpins",
               lambda: all(pushpins(t) == len(tasks) for t in tasks), 20)


def subscribe_per_task(running, tasks, per_task, live, timeout=30):
    """`per_task` clients on each task's Pushpin; when theirs goes, the next live one (the ALB)."""
    def picker(home):
        def pick(client):
            if not client.urls:
                return f"ws://{home}:7999/ws"
            others = [a for a in live if f"ws://{a}:7999/ws" != client.urls[-1]] or live
            return f"ws://{others[len(client.urls) % len(others)]}:7999/ws"
        return pick

    clients = [running.subscribers.add(f"{t.name}#{k}", "drill", picker(t["pushpin"].address))
               for t in tasks for k in range(per_task)]
    wait_until("every client's first snapshot", lambda: all(c.last_seq is not None for c in clients), timeout,
               clients=clients)
    return clients


def delivered(clients, seq):
    return lambda: all(c.last_seq is not None and c.last_seq >= seq for c in clients)


def pushpins(task):
    """The `restream_pushpins` gauge of the task's backend (Pushpins it publishes to)."""
    status, metrics = get(f"http://{task['backend'].address}:9100/metrics")
    gauge = [l for l in metrics.splitlines() if l.startswith("restream_pushpins ")] if status == 200 else []
    return float(gauge[0].split()[1]) if gauge else None
