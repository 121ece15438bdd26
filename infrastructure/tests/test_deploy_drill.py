"""The shipped deployment, executed: the ECS task definition of infrastructure/*.tf and the
services of docker-compose.yml run as local processes with the environment, secrets, commands,
users, working directories, ports, health checks and start order they describe (no Docker
engine here), against moto, scripts/minilambda.py and a fake upstream.

How the artifacts map onto one machine (drill_task.py says it in full):
- Each ECS task (awsvpc: its own network namespace) gets an address, 127.18.N.<i> (what the
  metadata endpoint answers, what other tasks and the clients reach), and a loopback stand-in,
  127.18.N.<100+i>; each compose service too (.11, .12, ... and .111, ...). Inside a task,
  `127.0.0.1`, `localhost` and `0.0.0.0` mean its loopback stand-in, in its environment and in
  the backend's built-in defaults; what it binds on `0.0.0.0` is relayed from its address, what
  it binds on `127.0.0.1` is not (drill_net.py). Ports are the real ones (5000, 7999, 5560,
  5561, 5564, 9100). Compose service names resolve to their service's address. One limit of a
  shared loopback: every address is reachable from every task, so a replica advertising its
  loopback instead of its ECS address would still work here; the drill checks that each
  backend asked the metadata endpoint instead.
- Containers run in a root-owned copy of their image's layout (the paths the Dockerfile COPYs;
  the directories its RUN lines create and chown); the backend runs as the image's user (uid
  10001), Pushpin through pushpin/entrypoint.sh as the `pushpin` user. `/app/...` in the
  environment is that copy's.
- ECS secrets are the values the terraform's secret versions hold (random_password: generated).
- Added by the test, nothing else: AWS credentials and endpoint URLs (moto; minilambda as the
  Lambda API serving a test fetcher `restreamables_drill` that reads the fake upstream),
  ECS_CONTAINER_METADATA_URI_V4 (a stand-in answering AWS's documented container JSON with the
  task's address), and for Pushpin where its config/run/log dirs are and the address its
  client port binds. Compose: the `dynamodb` service (the moto image) is scripts/moto_server.py,
  the secret file and keys.json are the ones the compose/ READMEs tell the operator to make,
  the upstream is a channel file the operator adds (channels/drill.toml), and clients connect
  to Pushpin's service address (the published host port is not reproduced).
- The test plays ECS and the load balancer: containers start in dependsOn order (Pushpin once
  the backend's healthCheck passes, run every 0.5 s here instead of every 10 s); clients reach
  a task's port 7999 once every replica publishes to its Pushpin, as the load balancer's
  healthy_threshold x interval ensures on AWS (RESTREAM_DRILL_LB_DELAY=0: as soon as its
  health check path answers, the stricter stress mode, drill_run.routed); a stopped
  task is first taken out of the clients' rotation (deregistered), then its containers get
  SIGTERM in reverse dependency order.

Needs root (to run processes as uid 10001 and as `pushpin`), Pushpin, and the debug binary
(`cargo build -p restream`, or RESTREAM_BIN). RESTREAM_DRILL_KEEP=1 keeps the work dir (every
container's log, Pushpin's own logs under t<N>/pushpin/var/log/pushpin) for a failure's evidence.
"""
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid

import pytest

import drill_deploy
import drill_image
import drill_task
import drill_tf
from drill_clients import get, wait_until
from drill_run import Running, delivered, pushpins, routed, subscribe_per_task

INTERVAL = 1.0  # the drill fetcher's poll_interval


def _needs_processes(test):
    """Skips where the drill cannot run: not root, and (outside CI) no Pushpin or no binary.
    In CI (`CI` set, as .ci/run does) scripts/test.sh installs Pushpin and builds the binary
    before the drill, so their absence is a failure, not a skip."""
    ci = bool(os.environ.get("CI"))
    for mark in [
        pytest.mark.skipif(os.geteuid() != 0, reason="the drill runs the backend as uid 10001 and Pushpin "
                           "as `pushpin`: run as root (CI does); no sudo fallback"),
        pytest.mark.skipif(not ci and shutil.which("pushpin") is None,
                           reason="Pushpin is not installed (scripts/install-deps.sh)"),
        pytest.mark.skipif(not ci and not drill_deploy.BINARY.exists(),
                           reason=f"{drill_deploy.BINARY} is missing: cargo build -p restream first"),
    ]:
        test = mark(test)
    return test


def test_the_evaluator_reads_terraform_as_terraform_would(tmp_path):
    (tmp_path / "main.tf").write_text('''
variable "name" {
  default = "svc"
}
variable "cert" {
  type = string
}
locals {
  https = var.cert != ""
  env   = { A = "1", B = "x\\"y" }
  list  = [for k, v in local.env : { name = k, value = v } if k != "B"]
  port  = local.https ? 443 : 7999
}
resource "random_password" "key" {
  length  = 40
  special = false
}
resource "aws_secretsmanager_secret" "key" {
  name_prefix = "${var.name}-key-"
}
resource "aws_secretsmanager_secret_version" "key" {
  secret_id     = aws_secretsmanager_secret.key.id
  secret_string = random_password.key.result
}
resource "aws_ecs_task_definition" "t" {
  container_definitions = jsonencode([{
    name        = "${var.name}-c"
    environment = concat(local.list, [{ name = "P", value = tostring(local.port) }])
    secrets     = [{ name = "K", valueFrom = aws_secretsmanager_secret.key.arn }]
    quoted      = local.env.B
  }])
}
''')
    with pytest.raises(drill_tf.HclError, match="cert"):
        drill_tf.Terraform(tmp_path, {})
    tf = drill_tf.Terraform(tmp_path, {"cert": ""})
    (task,) = tf.blocks("resource", "aws_ecs_task_definition").values()
    (c,) = json.loads(tf.attribute(task, "container_definitions"))
    assert c["name"] == "svc-c" and c["quoted"] == 'x"y'
    assert c["environment"] == [{"name": "A", "value": "1"}, {"name": "P", "value": "7999"}]
    secret = tf.secret_values()[c["secrets"][0]["valueFrom"]]
    assert len(secret) == 40 and secret.isalnum()
    assert tf.local("port") == 7999 and drill_tf.Terraform(tmp_path, {"cert": "arn:x"}).local("port") == 443


@pytest.fixture(scope="module")
def block():
    return drill_deploy.address_block()


@pytest.fixture(scope="module")
def workdir():
    path = tempfile.mkdtemp(prefix="drill", dir="/tmp")
    os.chmod(path, 0o755)  # the task users traverse it
    yield drill_deploy.pathlib.Path(path)
    if os.environ.get("RESTREAM_DRILL_KEEP") == "1":  # the tasks' logs, for a failure's evidence
        print(f"drill: kept {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def emulators(workdir):
    emu = drill_deploy.Emulators(workdir)
    yield emu
    emu.close()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ecs(workdir, emulators, block, first, mutate=None):
    deployment = drill_deploy.Ecs(workdir, emulators, block, {
        "table_name": unique("drill"), "keys_bucket_name": unique("drill-keys")}, first, mutate)
    deployment.provision()
    return deployment


def task_checks(deployment, task, live):
    """Every container port of the definition served for other tasks; the processes' users;
    what the backend may write; its endpoints, logs and membership."""
    for container in task.containers.values():
        for port in container.ports:  # portMappings: served, on the task's address
            assert port in container.exposed, f"{task.name}/{container.name}: {port} is not bound for other tasks"
            with socket.socket() as s:
                assert s.connect_ex((container.local, port)) == 0, f"{task.name}/{container.name}: nothing on {port}"
    backend, pushpin = task["backend"], task["pushpin"]
    assert drill_task.uid_of(backend.proc.pid) == {10001}, "the backend runs as the image's user"
    assert drill_task.uid_of(pushpin.proc.pid) == {pushpin.image.uid()}, "Pushpin runs as `pushpin`"
    assert os.readlink(f"/proc/{backend.proc.pid}/cwd") == backend.cwd
    probe = backend.popen(["sh", "-c", f"touch {backend.cwd}/.written"])
    assert probe.wait() != 0, "the backend's working dir is read-only for it"
    data = os.path.join(backend.cwd, "data")
    if os.path.isdir(data):
        assert drill_image.writable_by(data, 10001, 10001), "/app/data is writable by the backend"
    status, body = get(f"http://{task['pushpin'].address}:7999/readyz")
    assert (status, '"ready":true' in body.replace(" ", "")) == (200, True), (status, body)
    status, metrics = get(f"http://{backend.address}:9100/metrics")
    assert status == 200, f"metrics on the private port 9100: {status} {metrics[:200]}"
    assert "restream_pushpins" in metrics
    gauge = [l for l in metrics.splitlines() if l.startswith("restream_pushpins ")]
    assert gauge and float(gauge[0].split()[1]) == live, f"publishes to {gauge} Pushpins, {live} are live"
    status, _ = get(f"http://{task['pushpin'].address}:7999/metrics")
    assert status != 200, "metrics are not for the public port"
    with open(backend.log, errors="replace") as f:  # awslogs: CloudWatch reads JSON (and EMF) lines
        lines = [line for line in f.read().splitlines() if line.strip()]
    not_json = [line for line in lines if not _is_json_object(line)]
    assert lines and not not_json, f"backend output that is not a JSON log line: {not_json[:3]}"
    asked = deployment.emu.metadata.asked.get(f"{task.name}-backend", 0)
    assert asked > 0, "the backend never asked the task metadata endpoint for its address " \
                      "(on ECS it would advertise 127.0.0.1, which no other task reaches)"


def _is_json_object(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@_needs_processes
def test_two_tasks_and_a_rolling_replacement_lose_nothing_and_poll_once(workdir, emulators, block):
    started = time.monotonic()
    deployment = ecs(workdir, emulators, block, 0)
    assert deployment.network_mode == "awsvpc"
    assert deployment.desired_count >= 2, "production runs several tasks (desired_count)"
    running, upstream, stop = Running(), emulators.upstream, threading.Event()
    try:
        ready = drill_task.pushpin_ready(deployment.health_path)
        tasks = [running.start(deployment.task(i + 1), ready) for i in range(deployment.desired_count)]
        routed(deployment, tasks)
        live = [t["pushpin"].address for t in tasks]
        clients = subscribe_per_task(running, tasks, 2, live)
        base = clients[0].last_seq
        assert {c.last_seq for c in clients} == {base}, [c.last_seq for c in clients]
        calls_from, changes = time.monotonic(), []

        def change():
            while not stop.wait(1.3 * INTERVAL):
                changes.append(upstream.add())

        changer = threading.Thread(target=change, daemon=True)
        changer.start()
        wait_until("4 changes delivered", delivered(clients, base + 4), 30, clients=clients)
        for task in tasks:
            task_checks(deployment, task, len(tasks))
        # The rolling replacement: a new task, healthy, then the oldest stops (Pushpin first).
        new = running.start(deployment.task(len(tasks) + 1), ready)
        routed(deployment, [*tasks, new])
        live.append(new["pushpin"].address)
        # ECS deregisters the old target (no new clients), waits the deregistration delay,
        # then stops its containers; their clients reconnect through the load balancer.
        old = tasks.pop(0)
        live.remove(old["pushpin"].address)
        codes = old.stop()
        assert codes["backend"] == 0, f"the backend's graceful shutdown exits 0: {codes}"
        moved = [c for c in clients if c.name.startswith(old.name)]
        wait_until("the old task's clients on another task", lambda: all(len(c.urls) >= 2 for c in moved), 30,
                   clients=moved)
        seen = len(changes)
        wait_until("4 more changes", lambda: len(changes) >= seen + 4, 30)
        stop.set()
        changer.join()
        final = base + len(changes)
        wait_until(f"every client at seq {final}", delivered(clients, final), 30, clients=clients)
        time.sleep(2 * INTERVAL)  # room for a late duplicate
        calls_to = time.monotonic()
        stayed = [c for c in clients if c not in moved]
        assert all(len(c.urls) == 1 for c in stayed), f"clients of the tasks that stay were cut: {stayed}"
        problems = [p for c in clients for p in c.problems(base, final)]
        assert problems == [], "\n".join(problems)
        calls = [t for t in upstream.calls if calls_from <= t <= calls_to]
        assert 0 < len(calls) <= (calls_to - calls_from) / INTERVAL + 2, \
            f"{len(calls)} upstream calls in {calls_to - calls_from:.1f} s at a {INTERVAL} s interval"
        wait_until("the stopped task gone from every replica's Pushpin list",
                   lambda: all(pushpins(t) == len(tasks) + 1 for t in [*tasks, new]), 30)
        for task in [*tasks, new]:
            task_checks(deployment, task, len(tasks) + 1)
    finally:
        stop.set()
        running.close()
    overlaps = sum(c.overlaps() for c in clients)
    print(f"drill: {len(changes)} changes, {len(clients)} clients, {overlaps} resume overlaps, "
          f"{time.monotonic() - started:.1f} s")


def without(container, name):
    """A mutation: `name` removed from the container's environment and secrets."""
    def mutate(definitions):
        (definition,) = [d for d in definitions if d["name"] == container]
        before = len(definition.get("environment", [])) + len(definition.get("secrets", []))
        for key in ("environment", "secrets"):
            definition[key] = [e for e in definition.get(key, []) if e["name"] != name]
        after = len(definition["environment"]) + len(definition["secrets"])
        assert after == before - 1, f"the task definition's {container} has no {name}"
    return mutate


def quick_probe(deployment, emulators):
    """Two tasks, a client on each Pushpin, one change: both get it once, one poller polls."""
    running = Running()
    try:
        ready = drill_task.pushpin_ready(deployment.health_path)
        tasks = [running.start(deployment.task(i), ready) for i in (1, 2)]
        routed(deployment, tasks)
        live = [t["pushpin"].address for t in tasks]
        clients = subscribe_per_task(running, tasks, 1, live, timeout=15)
        base, since = max(c.last_seq for c in clients), time.monotonic()
        emulators.upstream.add()
        wait_until("the change on every task's client", delivered(clients, base + 1), 15, clients=clients)
        time.sleep(3 * INTERVAL)
        problems = [p for c in clients for p in c.problems(base, base + 1)]
        assert problems == [], problems
        calls = [t for t in emulators.upstream.calls if t >= since]
        assert len(calls) <= (time.monotonic() - since) / INTERVAL + 2, f"{len(calls)} upstream calls"
        for task in tasks:
            task_checks(deployment, task, 2)
    finally:
        running.close()


MUTATIONS = [
    ("backend", "RESTREAM_CLUSTER__SECRET"),
    ("pushpin", "RESTREAM_PUSHPIN_INTERNAL_ADDR"),
    ("backend", "RESTREAM_STORE__KIND"),
    ("backend", "RESTREAM_CLUSTER__ADVERTISE_HOST"),
    ("backend", "RESTREAM_CLUSTER__PUSHPIN_PUBLISH_SPEC"),
    ("pushpin", "RESTREAM_SIG_KEY"),
]


@_needs_processes
def test_the_quick_probe_passes_on_the_task_definition_as_shipped(workdir, emulators, block):
    quick_probe(ecs(workdir, emulators, block, 20), emulators)


@pytest.mark.parametrize("container,name", MUTATIONS, ids=[n for _, n in MUTATIONS])
@_needs_processes
def test_a_task_definition_without_a_needed_variable_fails_the_probe(workdir, emulators, block, container, name):
    first = 30 + 3 * MUTATIONS.index((container, name))
    deployment = ecs(workdir, emulators, block, first, without(container, name))
    with pytest.raises(AssertionError) as failed:
        quick_probe(deployment, emulators)
    assert "has no" not in str(failed.value), failed.value
    print(f"without {name}: {str(failed.value).splitlines()[0]}")


@_needs_processes
def test_the_backend_image_starts_as_its_user_with_its_defaults(workdir, block):
    """`docker run -e RESTREAM_PUSHPIN__SIG_KEY=... restream-backend`: the image's ENV and the
    one setting without a default (embedded store in /app/data)."""
    image = drill_image.Image(drill_deploy.ROOT / "backend/Dockerfile", drill_deploy.ROOT,
                              built={"/src/target/release/restream": drill_deploy.BINARY})
    root = image.build(workdir / "image-defaults")
    address = f"{block}50"
    container = drill_task.Container(
        "backend", image, root,
        drill_task.container_env(image, {"RESTREAM_PUSHPIN__SIG_KEY": uuid.uuid4().hex}, address, {}, root,
                                 [image.workdir], {}),
        image.entrypoint + image.cmd, address, {"command": ["CMD", "restream", "health"], "timeout": 5},
        workdir / "image-defaults.log")
    container.command[0] = container._which(container.command[0])
    task = drill_task.Task("image", {"backend": container}, {})
    try:
        task.start(None, timeout=20)
        assert drill_task.uid_of(container.proc.pid) == {10001}
    finally:
        task.stop()
        task.kill()


@_needs_processes
def test_docker_compose_services_serve_a_client(workdir, emulators, block):
    key = uuid.uuid4().hex * 2  # `openssl rand -hex 32 > compose/secrets/pushpin_sig_key`
    compose = drill_deploy.Compose(workdir, block, emulators.upstream.url, key)
    compose.start_moto()
    running = Running()
    try:
        task = running.start(compose.task(), drill_task.pushpin_ready("/healthz"))
        pushpin = task["pushpin"].address
        (client,) = [running.subscribers.add("compose", "drill", lambda c: f"ws://{pushpin}:7999/ws")]
        wait_until("the compose client's snapshot", lambda: client.last_seq is not None, 30)
        base = client.last_seq
        emulators.upstream.add()
        wait_until("the change through compose's Pushpin", delivered([client], base + 1), 15, clients=[client])
        assert client.problems(base, base + 1) == []
        status, body = get(f"http://{pushpin}:7999/readyz")
        assert status == 200 and '"ready":true' in body.replace(" ", ""), (status, body)
        status, detail = get(f"http://{task['backend'].address}:5000/readyz")
        assert status == 200, f"the backend's own /readyz: {detail}"
    finally:
        running.close()
        compose.moto.stop()
