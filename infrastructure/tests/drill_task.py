"""Runs what an ECS task definition or a compose service describes, as local processes: each
container's environment (image ENV, then the definition's `environment`, then its `secrets`),
its command (the definition's, else the image's ENTRYPOINT + CMD), its user (the image's USER)
and working directory in a copy of its image's layout (drill_image.py).

Network: in awsvpc every task has its own network namespace: a loopback and an interface with
its private address. Here each task (compose: each service) gets two loopback addresses: its
address (127.18.N.i, what the metadata endpoint tells and others reach) and its loopback
stand-in (127.18.N.1xx). `127.0.0.1`, `localhost` and `0.0.0.0` in its environment and in the
backend's built-in defaults (`restream config` shows which settings name them; they are passed
as env vars) become the loopback stand-in; a port bound to `0.0.0.0` is also reachable on the
task's address through a relay (drill_net.py), a port bound to `127.0.0.1` is not. Every port
stays the same (5000, 7999, 5560, 5561, 5564, 9100) on different addresses.

Image paths under the WORKDIR (`/app/...`) and `/run/secrets/` are the layout's. Added to what
the definition gives: only the emulator wiring (AWS credentials and endpoint URLs for moto and
minilambda, ECS_CONTAINER_METADATA_URI_V4 for the metadata stand-in) and, for Pushpin, where
its config, run dir and log dir are, the loopback stand-in for its client port (the image binds
every interface: relayed) and for the entrypoint's own `127.0.0.1` defaults.
"""
import json
import os
import re
import signal
import subprocess
import time

import drill_clients
import drill_net

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOOPBACK = re.compile(r"(?<![\d.])(127\.0\.0\.1|0\.0\.0\.0|localhost)(?![\d.])")
WILDCARD_PORT = re.compile(r"(?<![\d.])0\.0\.0\.0:(\d+)")


def map_value(value, address, hosts, root, path_roots):
    """A container's env value with its loopback/wildcard, the compose service names and image
    paths translated to the drill's: see the module docstring."""
    value = LOOPBACK.sub(address, value)
    for name, addr in hosts.items():  # `//name[:/]`, `//name` at the end, `name:<port>`
        value = re.sub(rf"((?<=//){re.escape(name)}(?=[:/\"]|$)|^{re.escape(name)}(?=:\d))", addr, value)
    if any(value == p or value.startswith(p.rstrip("/") + "/") for p in path_roots):
        value = str(root) + value
    return value


class Container:
    """One container of a task or one compose service, not yet started."""

    def __init__(self, name, image, root, env, command, address, health=None, log=None, local=None,
                 exposed=()):
        """`address`: the task's; `local`: its loopback stand-in; `exposed`: the ports it binds
        on every interface (relayed from `address`)."""
        self.name, self.image, self.root, self.env = name, image, root, env
        self.command, self.address, self.health, self.log = command, address, health, log
        self.local, self.exposed = local or address, set(exposed)
        self.proc, self.ports = None, []

    @property
    def cwd(self):
        return str(self.root) + self.image.workdir

    def popen(self, argv, **kw):
        return subprocess.Popen(
            argv, env=self.env, cwd=self.cwd, user=self.image.uid(), group=self.image.gid(),
            extra_groups=[], **kw)

    def start(self):
        out = open(self.log, "ab")
        self.proc = self.popen(self.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def healthy(self):
        """The definition's healthCheck command once (ECS runs it inside the container)."""
        kind, *argv = self.health["command"]
        argv = ["sh", "-c", argv[0]] if kind == "CMD-SHELL" else argv
        argv[0] = self._which(argv[0])
        try:
            return self.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait(
                timeout=self.health.get("timeout", 5)) == 0
        except subprocess.TimeoutExpired:
            return False

    def _which(self, program):
        if "/" in program:
            return str(self.root) + program if (self.root / program.lstrip("/")).exists() else program
        for d in self.env["PATH"].split(":"):
            if os.access(os.path.join(d, program), os.X_OK):
                return os.path.join(d, program)
        return program

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL of its process group after `timeout` (ECS's stopTimeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def kill_group(self):
        """Whatever of its process group is left (Pushpin's runner starts four children)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def log_tail(self, lines=40):
        try:
            return "\n".join(open(self.log, errors="replace").read().splitlines()[-lines:])
        except OSError:
            return ""


def container_env(image, definition_env, address, hosts, root, path_roots, wiring):
    env = {"PATH": f"{root}/usr/local/bin:{SYSTEM_PATH}", "HOSTNAME": f"task-{address}",
           "HOME": str(root) + image.workdir}
    for key, value in {**image.env, **definition_env}.items():
        env[key] = map_value(str(value), address, hosts, root, path_roots)
    env.update(wiring)
    return env


def wildcard_ports(env):
    """The ports an environment binds on every interface (`0.0.0.0:<port>`)."""
    return {int(p) for value in env.values() for p in WILDCARD_PORT.findall(str(value))}


def translate_defaults(container, address):
    """Env vars for the backend settings whose built-in defaults name the loopback (e.g.
    pushpin.zmq_push_specs = tcp://127.0.0.1:5560): the task's loopback is its address."""
    proc = container.popen([container._which("restream"), "config"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    if proc.returncode != 0:
        return {}  # the settings do not load: the backend will say why when it starts
    extra = {}
    for section, values in json.loads(out).items():
        if not isinstance(values, dict) or section == "dev":
            continue
        for key, value in values.items():
            name = f"RESTREAM_{section.upper()}__{key.upper()}"
            if name in container.env:
                continue
            if isinstance(value, str) and LOOPBACK.search(value):
                extra[name] = LOOPBACK.sub(address, value)
            elif isinstance(value, list) and any(isinstance(v, str) and LOOPBACK.search(v) for v in value):
                extra[name] = json.dumps([LOOPBACK.sub(address, v) if isinstance(v, str) else v for v in value])
            else:
                continue
            container.exposed |= wildcard_ports({name: value})
    return extra


class Task:
    """One ECS task (or the compose project): its containers, started in dependsOn order."""

    def __init__(self, name, containers, depends):
        self.name, self.containers, self.depends = name, containers, depends
        self.order = _start_order(containers, depends)

    def __getitem__(self, name):
        return self.containers[name]

    def start(self, ready, timeout=40):
        for container in self.containers.values():
            if container.local != container.address:
                for port in sorted(container.exposed):
                    drill_net.relays().open(container.address, container.local, port)
        self._start(ready, timeout)

    def _start(self, ready, timeout):
        """Starts each container once what it depends on is in its condition (HEALTHY: the
        healthCheck passes; START: started). `ready(container)` says when a container without
        a healthCheck is up (the load balancer's target health check, for Pushpin)."""
        for name in self.order:
            for dep, condition in self.depends.get(name, {}).items():
                dependency = self.containers[dep]
                if condition == "HEALTHY":
                    self.wait(dependency, dependency.healthy, "healthy", timeout)
            container = self.containers[name]
            container.start()
        for container in self.containers.values():
            check = container.healthy if container.health else (lambda c=container: ready(c))
            self.wait(container, check, "healthy" if container.health else "ready", timeout)

    def wait(self, container, check, what, timeout):
        deadline = time.monotonic() + timeout
        while not check():
            for c in self.containers.values():  # an essential container exited: the task stops
                if c.proc is not None and not c.alive():
                    raise AssertionError(f"{self.name}/{c.name} exited ({c.proc.returncode}) before "
                                         f"{container.name} was {what}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}/{container.name} not {what} after {timeout} s:\n{self.logs()}")
            time.sleep(0.5)

    def logs(self, lines=15):
        return "\n".join(f"--- {c.name} ({c.log})\n{c.log_tail(lines)}" for c in self.containers.values())

    def stop(self):
        """ECS stops the containers in reverse dependency order: Pushpin, then the backend."""
        codes = {}
        for name in reversed(self.order):
            codes[name] = self.containers[name].stop()
        self._close_relays()
        return codes

    def _close_relays(self):
        for address in {c.address for c in self.containers.values() if c.local != c.address}:
            drill_net.relays().close(address)

    def kill(self):
        for container in self.containers.values():
            container.kill_group()
        self._close_relays()


def _start_order(containers, depends):
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for dep in depends.get(name, {}):
            visit(dep)
        order.append(name)

    for name in containers:
        visit(name)
    return order


def pushpin_ready(path):
    def ready(container):
        status, _ = drill_clients.get(f"http://{container.address}:7999{path}", timeout=2)
        return status == 200
    return ready


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return {int(x) for x in line.split()[1:]}
