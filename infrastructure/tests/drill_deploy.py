"""The deployments the drill runs, built from the shipped files: the ECS task definition of
infrastructure/*.tf (drill_hcl.py evaluates it) and the services of docker-compose.yml, plus the
emulators they run against (moto via scripts/moto_server.py, scripts/minilambda.py with a test
fetcher, the ECS task metadata stand-in, a fake upstream).
"""
import json
import os
import pathlib
import random
import re
import shutil
import socket
import subprocess
import sys

import boto3
import yaml

import drill_clients
import drill_tf
import drill_image
import drill_task

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The binary `cargo test` built (scripts/test.sh runs the drill after it), wherever cargo puts it.
BINARY = pathlib.Path(os.environ.get("RESTREAM_BIN") or pathlib.Path(
    os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug/restream")
PYTHON = pathlib.Path(sys.executable)
REQUIRED_VARS = {
    "vpc_id": "vpc-drill", "public_subnet_ids": ["subnet-pub-a", "subnet-pub-b"],
    "private_subnet_ids": ["subnet-priv-a", "subnet-priv-b"],
    "backend_image": "restream-backend:drill", "pushpin_image": "restream-pushpin:drill",
}
# The fake upstream, behind the Lambda stand-in as a fetcher deployed the Apex way.
FETCHER = '''"""Deploy drill fetcher: the items of the fake upstream, every second."""
import json, os, urllib.request

METADATA = {"name": "drill", "description": "deploy drill: the test's fake upstream",
            "id_field": "id", "api_url": "http://upstream.invalid/items", "doc_url": "",
            "keys": [], "poll_interval": 1, "rate_limit": {"per_minute": 600}}


def lambda_function(event, context):
    if event.get("call") == "metadata":
        return METADATA
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(os.environ["DRILL_UPSTREAM"] + "/items", timeout=5) as r:
        return {"status_code": 200, "result": json.load(r)["items"], "complete": True}
'''
# The same upstream as a declarative channel (compose runs `process` and `http` fetchers).
CHANNEL = '''name = "drill"
description = "deploy drill: the test's fake upstream"
url = "{base}/items"
base_url = "%s"
items = "/items"
id_field = "id"
poll_interval = 1
complete = true
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def address_block():
    """127.18.N. with N free: the tasks' addresses are 127.18.N.1, .2, ..."""
    for n in random.sample(range(1, 250), 30):
        try:
            for host in (1, 2, 3, 11, 12, 13):
                with socket.socket() as s:
                    s.bind((f"127.18.{n}.{host}", 5000))
            return f"127.18.{n}."
        except OSError:
            continue
    raise RuntimeError("no free 127.18.N.0/24 block on loopback")


class Process:
    def __init__(self, argv, log, env, health_url):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        drill_clients.wait_until(f"{argv[1]} at {health_url}",
                                 lambda: self.proc.poll() is None and drill_clients.get(health_url, timeout=1)[0] == 200
                                 or self._dead(), 30)

    def _dead(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.log} exited: {open(self.log).read()[-2000:]}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


def moto(tmp, host="127.0.0.1", port=None):
    port = port or free_port()
    env = {"PATH": os.environ.get("PATH", drill_task.SYSTEM_PATH), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = Process([str(PYTHON), str(ROOT / "scripts/moto_server.py"), "-H", host, "-p", str(port)],
                   tmp / f"moto-{host}.log", env, f"http://{host}:{port}/moto-api/")
    return proc, f"http://{host}:{port}"


class Emulators:
    """moto, minilambda serving the drill fetcher, the metadata stand-in and the upstream."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.upstream = drill_clients.Upstream()
        self.metadata = drill_clients.TaskMetadata()
        self.moto, self.moto_url = moto(tmp)
        project = json.loads((ROOT / "project.json").read_text())
        lam = tmp / "lambda"
        (lam / "functions/drill").mkdir(parents=True)
        (lam / "project.json").write_text(json.dumps(project))
        (lam / "functions/drill/main.py").write_text(FETCHER)
        (lam / "functions/drill/function.json").write_text(json.dumps(
            {"environment": {"DRILL_UPSTREAM": self.upstream.url}}))
        port = free_port()
        env = {"PATH": os.environ.get("PATH", drill_task.SYSTEM_PATH), "AWS_REGION": "us-east-1",
               "PYTHONDONTWRITEBYTECODE": "1"}
        self.lambda_ = Process([str(PYTHON), str(ROOT / "scripts/minilambda.py"), "--root", str(lam),
                                "--host", "127.0.0.1", "--port", str(port), "--python", str(PYTHON)],
                               tmp / "minilambda.log", env, f"http://127.0.0.1:{port}/health")
        self.lambda_url = f"http://127.0.0.1:{port}"
        self.function = f"{project['name']}_drill"

    def aws_env(self):
        return {"AWS_ACCESS_KEY_ID": "drill", "AWS_SECRET_ACCESS_KEY": "drill",
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": self.moto_url,
                "AWS_ENDPOINT_URL_LAMBDA": self.lambda_url}

    def client(self, service, region):
        return boto3.client(service, endpoint_url=self.moto_url, region_name=region,
                            aws_access_key_id="drill", aws_secret_access_key="drill")

    def close(self):
        for closer in (self.lambda_.stop, self.moto.stop, self.upstream.close, self.metadata.close):
            closer()


class Ecs:
    """The task definition, service and target group of infrastructure/*.tf."""

    IMAGES = {"backend": (ROOT / "backend/Dockerfile", ROOT),
              "pushpin": (ROOT / "pushpin/Dockerfile", ROOT / "pushpin")}

    def __init__(self, tmp, emulators, block, variables, first=0, mutate=None):
        """Tasks get the addresses `<block><first + i>`; `mutate(definitions)` edits the
        container definitions (the mutation checks)."""
        self.tmp, self.emu, self.block, self.first = tmp, emulators, block, first
        self.tf = drill_tf.Terraform(ROOT / "infrastructure", {**REQUIRED_VARS, **variables})
        (name, td), = self.tf.blocks("resource", "aws_ecs_task_definition").items()
        self.network_mode = self.tf.attribute(td, "network_mode")
        self.definitions = json.loads(self.tf.attribute(td, "container_definitions"))
        if mutate:
            mutate(self.definitions)
        self.secrets = self.tf.secret_values()
        (_, service), = self.tf.blocks("resource", "aws_ecs_service").items()
        self.desired_count = self.tf.attribute(service, "desired_count")
        (_, target), = self.tf.blocks("resource", "aws_lb_target_group").items()
        check = {k: self.tf.value(v[0], {}) for k, v in target["health_check"][0].items() if not k.startswith("__")}
        self.health_path = check["path"]
        # A new target gets traffic once `healthy_threshold` checks in a row passed (AWS defaults).
        self.alb_delay = check.get("interval", 30) * check.get("healthy_threshold", 5)
        self.region = self.tf.vars["region"]

    def provision(self):
        """What `terraform apply` and the operator do before the tasks start: the table (as
        aws_dynamodb_table declares it) and the keys object in the keys bucket."""
        (_, table), = self.tf.blocks("resource", "aws_dynamodb_table").items()
        attr = lambda block, key: self.tf.value(block[key][0], {})
        ddb = self.emu.client("dynamodb", self.region)
        name = attr(table, "name")
        ddb.create_table(
            TableName=name, BillingMode=attr(table, "billing_mode"),
            KeySchema=[{"AttributeName": attr(table, "hash_key"), "KeyType": "HASH"},
                       {"AttributeName": attr(table, "range_key"), "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": attr(a, "name"), "AttributeType": attr(a, "type")}
                                  for a in table["attribute"]])
        ttl = table["ttl"][0]
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "AttributeName": attr(ttl, "attribute_name"), "Enabled": attr(ttl, "enabled")})
        (_, bucket), = self.tf.blocks("resource", "aws_s3_bucket").items()
        s3 = self.emu.client("s3", self.region)
        s3.create_bucket(Bucket=attr(bucket, "bucket"))
        s3.put_object(Bucket=attr(bucket, "bucket"), Key=self.tf.vars["keys_object_key"], Body=b"{}")
        return name

    def address(self, index):
        return f"{self.block}{self.first + index}"

    def local(self, index):
        return f"{self.block}{100 + self.first + index}"

    def task(self, index):
        address, local = self.address(index), self.local(index)
        containers, depends = {}, {}
        for definition in self.definitions:
            name = definition["name"]
            assert name in self.IMAGES, f"the drill knows no image for container {name}"
            image = drill_image.Image(*self.IMAGES[name], built={"/src/target/release/restream": BINARY})
            if definition.get("user"):
                image.user = definition["user"]
            if definition.get("workingDirectory"):
                image.workdir = definition["workingDirectory"]
            root = image.build(self.tmp / f"t{self.first + index}" / name)
            env = {e["name"]: e["value"] for e in definition.get("environment", [])}
            for secret in definition.get("secrets", []):
                assert secret["valueFrom"] in self.secrets, f"{name}: {secret} names no secret terraform creates"
                env[secret["name"]] = self.secrets[secret["valueFrom"]]
            uri = self.emu.metadata.register(f"task{self.first + index}", name, address)
            wiring = {**self.emu.aws_env(), "ECS_CONTAINER_METADATA_URI_V4": uri}
            wiring.update(pushpin_wiring(image, root, local, {**image.env, **env}))
            command = (definition.get("entryPoint") or image.entrypoint) + (definition.get("command") or image.cmd)
            container = drill_task.Container(
                name, image, root, drill_task.container_env(image, env, local, {}, root, [image.workdir], wiring),
                command, address, definition.get("healthCheck"), self.tmp / f"t{self.first + index}-{name}.log",
                local, exposed_ports(image, {**image.env, **env}, root))
            container.command[0] = container._which(container.command[0])
            container.ports = [p["containerPort"] for p in definition.get("portMappings", [])]
            if runs_restream(image):
                container.env.update(drill_task.translate_defaults(container, local))
            containers[name] = container
            depends[name] = {d["containerName"]: d["condition"] for d in definition.get("dependsOn", [])}
        return drill_task.Task(f"task{self.first + index}", containers, depends)


def _env(service):
    env = service.get("environment") or {}
    return dict(e.split("=", 1) for e in env) if isinstance(env, list) else env


def runs_restream(image):
    return bool(image.entrypoint) and image.entrypoint[0].rsplit("/", 1)[-1] == "restream"


def runs_pushpin(image):
    return any(p.endswith("restream-pushpin") for p in image.entrypoint)


def pushpin_wiring(image, root, local, env):
    """Where the image keeps Pushpin's config, run and log dirs (the layout's), its client port
    on the task's loopback stand-in (the image binds every interface: relayed), and the
    entrypoint's defaults that name the loopback (`${VAR:-127.0.0.1}`) when `env` leaves them
    unset: the task's loopback stand-in."""
    if not runs_pushpin(image):
        return {}
    script = (root / image.entrypoint[0].lstrip("/")).read_text()
    defaults = {name: drill_task.LOOPBACK.sub(local, value)
                for name, value in re.findall(r"\$\{(\w+):?-([^}]*)\}", script)
                if name not in env and drill_task.LOOPBACK.search(value)}
    return {**defaults, "RESTREAM_PUSHPIN_ETC": f"{root}/etc/pushpin",
            "RESTREAM_PUSHPIN_RUN_DIR": f"{root}/var/run/pushpin",
            "RESTREAM_PUSHPIN_LOG_DIR": f"{root}/var/log/pushpin", "RESTREAM_PUSHPIN_CLIENT_ADDR": local}


def exposed_ports(image, env, root):
    """The ports a container binds on every interface, from its environment (`0.0.0.0:<port>`)
    and, for Pushpin, pushpin.conf as the entrypoint renders it: the client port (http_port,
    every interface) and, with RESTREAM_PUSHPIN_INTERNAL_ADDR=0.0.0.0, the internal sockets."""
    ports = drill_task.wildcard_ports(env)
    if runs_pushpin(image):
        template = (root / "etc/pushpin/pushpin.conf.in").read_text()
        ports.add(int(re.search(r"^http_port=(\d+)$", template, re.M).group(1)))
        if env.get("RESTREAM_PUSHPIN_INTERNAL_ADDR") == "0.0.0.0":
            ports |= {int(p) for p in re.findall(r"@INTERNAL_ADDR@:(\d+)", template)}
            if re.search(r"^push_in_http_addr=@INTERNAL_ADDR@$", template, re.M):
                ports.add(int(re.search(r"^push_in_http_port=(\d+)$", template, re.M).group(1)))
    return ports


class Compose:
    """docker-compose.yml's services; the `dynamodb` service (motoserver/moto) is moto_server.py."""

    def __init__(self, tmp, block, upstream_url, sig_key):
        self.tmp, self.spec = tmp, yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        self.services = self.spec["services"]
        self.hosts = {name: f"{block}{11 + i}" for i, name in enumerate(self.services)}
        self.locals = {name: f"{block}{111 + i}" for i, name in enumerate(self.services)}
        self.upstream_url, self.sig_key, self.moto = upstream_url, sig_key, None
        (self.moto_service,) = [
            (name, self.hosts[name], int(_env(s).get("MOTO_PORT", 5000)))
            for name, s in self.services.items() if "build" not in s]

    def task(self):
        containers, depends = {}, {}
        for name, service in self.services.items():
            address, local = self.hosts[name], self.locals[name]
            env = _env(service)
            deps = service.get("depends_on") or []
            if isinstance(deps, list):
                deps = {d: {} for d in deps}
            depends[name] = {d: "HEALTHY" if c.get("condition") == "service_healthy" else "START"
                             for d, c in deps.items()}
            if "build" not in service:
                assert service["image"].startswith("motoserver/moto"), f"the drill cannot run {service['image']}"
                continue
            build = service["build"]
            context = ROOT / (build if isinstance(build, str) else build["context"])
            dockerfile = (context / "Dockerfile" if isinstance(build, str)
                          else ROOT / build.get("dockerfile", "Dockerfile"))
            image = drill_image.Image(dockerfile, context, built={"/src/target/release/restream": BINARY})
            root = image.build(self.tmp / "compose" / name)
            self.mount(service, root, image)
            health = service.get("healthcheck")
            health = {"command": health["test"], "timeout": 5} if health else None
            if health:
                health["command"] = [drill_task.map_value(a, local, self.hosts, root, []) for a in health["command"]]
            command = image.entrypoint + (service.get("command") or image.cmd)
            container = drill_task.Container(
                name, image, root,
                drill_task.container_env(image, {k: str(v) for k, v in env.items()}, local, self.hosts, root,
                                         [image.workdir, "/run/secrets"],
                                         pushpin_wiring(image, root, local, {**image.env, **env})),
                command, address, health, self.tmp / f"compose-{name}.log", local,
                exposed_ports(image, {**image.env, **env}, root))
            container.command[0] = container._which(container.command[0])
            if runs_restream(image):
                container.env.update(drill_task.translate_defaults(container, local))
            containers[name] = container
        for deps in depends.values():
            deps.pop(self.moto_service[0], None)
        return drill_task.Task("compose", containers, depends)

    def mount(self, service, root, image):
        """The service's secrets (/run/secrets/<name>) and bind mounts, as compose makes them."""
        for secret in service.get("secrets", []):
            path = drill_image._mkdir(root, "/run/secrets") / secret
            path.write_text(self.sig_key + "\n")
            path.chmod(0o644)  # compose/secrets/README.md
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            dest = drill_image._mkdir(root, target)
            shutil.copytree(ROOT / source, dest, dirs_exist_ok=True)
            if target == "/app/keys":  # compose/keys/README.md: the operator's keys file
                (dest / "keys.json").write_text("{}")
                os.chown(dest / "keys.json", image.uid(), image.gid())
                (dest / "keys.json").chmod(0o600)
        channels = root / image.workdir.lstrip("/") / "channels"
        if runs_restream(image) and channels.is_dir():  # the operator's own channel: the upstream
            (channels / "drill.toml").write_text(CHANNEL % self.upstream_url)

    def start_moto(self):
        _, address, port = self.moto_service
        self.moto, _ = moto(self.tmp, address, port)
