"""Offline checks of the deployment files: terraform parses and passes a security scan, each
port is open only to who needs it, IAM names specific resources, the table matches the Rust
store, the ECS task runs the backends in cluster mode with their secrets from Secrets Manager,
the alarms watch metrics the backend emits, and the Dockerfiles and docker-compose.yml are
sound. (test_runbook.py: the Apex project, the fetchers' packages and docs/deploy.md.)

terraform init/validate and docker builds need the network or an engine; these checks do not.
infrastructure/tests/test_deploy_drill.py starts what the task definition describes.
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tfparse import (INFRA, ROOT, TF_FILES, blocks, container_definitions, dockerfile, environment, local,
                     one, parsed, resource, variable, variable_accepts)

PUBLIC_PORT = "${local.public_port}"
# What the tasks serve each other (cluster mode) and the operator (metrics); Pushpin's SUB and
# command sockets (5562, 5563) must never be opened.
CLUSTER_PORTS = {5000, 5560, 5561, 5564}
METRICS_PORT = 9100
NEVER_OPEN = {5562, 5563}
TASKS_SG = "${aws_security_group.tasks.id}"
ALB_SG = "${aws_security_group.alb.id}"


def test_there_is_terraform_and_every_file_parses():
    assert len(TF_FILES) >= 8, TF_FILES
    assert parsed()  # hcl2.load raises with line and column on a syntax error


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary here")
def test_terraform_fmt_is_clean():
    out = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", "-recursive", str(INFRA)],
        capture_output=True, text=True,
        env={"TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_checkov_finds_no_failed_check():
    checkov = pathlib.Path(sys.executable).parent / "checkov"
    assert checkov.exists(), "checkov is installed by scripts/install-deps.sh"
    out = subprocess.run(
        [str(checkov), "-d", str(INFRA), "--framework", "terraform", "--skip-download",
         "--compact", "--output", "json"],
        capture_output=True, text=True, timeout=300,
    )
    report = json.loads(out.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 50, summary
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    for skipped in report["results"]["skipped_checks"]:
        reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) > 20, f"skip of {skipped['check_id']} needs a reason: {reason!r}"


def expand_ports(rule):
    """The ports a rule opens: for_each over local.cluster_ports expands to its values."""
    ports = {one(rule.get("from_port")), one(rule.get("to_port"))}
    if ports == {"${each.value}"}:
        assert one(rule["for_each"]) == "${local.cluster_ports}", rule
        return set(local("cluster_ports").values())
    if ports == {"${local.metrics_port}"}:
        return {local("metrics_port")}
    return ports


def ingress_rules():
    return blocks("resource", "aws_vpc_security_group_ingress_rule")


def test_each_port_is_open_only_to_who_needs_it():
    rules = ingress_rules()
    assert rules
    seen = set()
    for name, rule in rules:
        group = one(rule["security_group_id"])
        ports = expand_ports(rule)
        cidr = one(rule.get("cidr_ipv4"))
        source = one(rule.get("referenced_security_group_id"))
        assert (cidr is None) != (source is None), f"{name}: one source, a CIDR or a group"
        assert one(rule.get("cidr_ipv6")) is None, name
        assert not ports & NEVER_OPEN, f"{name} opens Pushpin's SUB or command socket"
        if group == ALB_SG:
            # The world: the client port, and 80 only to redirect when there is a certificate.
            assert cidr == "${each.value}" and source is None, name
            if ports == {80}:
                assert one(rule["for_each"]) == "${local.https ? toset(var.allowed_client_cidrs) : toset([])}", name
                seen.add("redirect")
            else:
                assert ports == {PUBLIC_PORT} and one(rule["for_each"]) == "${toset(var.allowed_client_cidrs)}", name
                seen.add("clients")
        elif ports == {7999}:
            assert group == TASKS_SG and source == ALB_SG, f"{name}: Pushpin's client port from the ALB only"
            seen.add("alb")
        elif ports == CLUSTER_PORTS:
            assert group == TASKS_SG and source == TASKS_SG, f"{name}: cluster ports from the tasks only"
            seen.add("cluster")
        elif ports == {METRICS_PORT}:
            assert group == TASKS_SG, name
            if cidr is not None:
                assert one(rule["for_each"]) == "${toset(var.metrics_scrape_cidrs)}", name
                seen.add("metrics cidr")
            else:
                assert one(rule["for_each"]) == "${toset(var.metrics_scrape_security_group_ids)}", name
                assert source == "${each.value}", name
                seen.add("metrics sg")
        else:
            pytest.fail(f"{name} opens {ports}")
    assert seen == {"clients", "redirect", "alb", "cluster", "metrics cidr", "metrics sg"}, seen
    for name, group in blocks("resource", "aws_security_group"):
        assert "ingress" not in group and "egress" not in group, f"{name}: use separate rules"
    assert one(variable("allowed_client_cidrs")["default"]) == ["0.0.0.0/0"]
    # Nobody scrapes until the operator names who may.
    assert one(variable("metrics_scrape_cidrs")["default"]) == []
    assert one(variable("metrics_scrape_security_group_ids")["default"]) == []


def test_tasks_reach_each_other_on_the_cluster_ports_only():
    egress = blocks("resource", "aws_vpc_security_group_egress_rule")
    to_tasks = [(n, r) for n, r in egress
                if one(r["security_group_id"]) == TASKS_SG and one(r.get("referenced_security_group_id")) == TASKS_SG]
    assert len(to_tasks) == 1 and expand_ports(to_tasks[0][1]) == CLUSTER_PORTS, to_tasks
    for name, rule in egress:
        if one(rule.get("cidr_ipv4")) is not None:
            assert expand_ports(rule) == {443}, f"{name}: only HTTPS leaves for the internet"


def test_the_security_groups_match_what_the_containers_serve():
    containers = container_definitions()
    served = {c: {m["containerPort"] for m in containers[c]["portMappings"]} for c in containers}
    assert served == {"pushpin": {7999, 5560, 5561, 5564}, "backend": {5000, METRICS_PORT}}
    assert served["pushpin"] | served["backend"] == CLUSTER_PORTS | {7999, METRICS_PORT}
    for c in containers.values():
        assert all(m["protocol"] == "tcp" and "hostPort" not in m for m in c["portMappings"]), c["name"]
    env = environment(containers["backend"])
    assert env["RESTREAM_SERVER__LISTEN"] == "0.0.0.0:5000"
    assert env["RESTREAM_SERVER__METRICS_LISTEN"] == f"0.0.0.0:{METRICS_PORT}"
    ports = {int(re.search(r":(\d+)$", env[f"RESTREAM_CLUSTER__PUSHPIN_{k}"]).group(1))
             for k in ["PUBLISH_SPEC", "HTTP_URL", "STATS_SPEC"]}
    assert ports == {5560, 5561, 5564}
    # The load balancer routes to Pushpin's client port only, never the backend or metrics.
    (_, target), = blocks("resource", "aws_lb_target_group")
    assert one(target["port"]) == 7999
    service_lb = one(resource("aws_ecs_service", "restream")["load_balancer"])
    assert one(service_lb["container_name"]) == "pushpin" and one(service_lb["container_port"]) == 7999


def test_public_listeners_https_with_a_redirect_or_plain_for_evaluation():
    listeners = dict(blocks("resource", "aws_lb_listener"))
    assert {n: (str(one(l["port"])), one(l["count"])) for n, l in listeners.items()} == {
        "https": ("443", "${local.https ? 1 : 0}"),
        "redirect": ("80", "${local.https ? 1 : 0}"),
        "plain": ("7999", "${local.https ? 0 : 1}"),
    }
    redirect = one(one(listeners["redirect"]["default_action"])["redirect"])
    assert (one(redirect["protocol"]), one(redirect["port"]), one(redirect["status_code"])) == ("HTTPS", "443", "HTTP_301")
    assert one(listeners["https"]["ssl_policy"]).startswith("ELBSecurityPolicy-TLS13")
    for name in ["https", "plain"]:
        assert one(one(listeners[name]["default_action"])["target_group_arn"]) == "${aws_lb_target_group.pushpin.arn}"
    for name, target in blocks("resource", "aws_lb_target_group"):
        assert one(target["port"]) == 7999, name


def backend_default(key):
    """A default of the backend's [server] settings (backend/src/config/file.rs), or None."""
    found = re.search(rf"\b{key}: (\d+),", (ROOT / "backend/src/config/file.rs").read_text())
    return int(found.group(1)) if found else None


def test_idle_connections_outlive_the_keep_alives():
    (_, alb), = blocks("resource", "aws_lb")
    assert one(alb["idle_timeout"]) == "${var.alb_idle_timeout}"
    assert one(variable("alb_idle_timeout")["default"]) == 120
    assert variable_accepts("alb_idle_timeout", 120) and not variable_accepts("alb_idle_timeout", 30)
    keep_alives = {"sse_keep_alive_secs": backend_default("sse_keep_alive_secs"),
                   "client_keep_alive_secs": backend_default("client_keep_alive_secs")}
    assert keep_alives["sse_keep_alive_secs"] == 20
    # client_keep_alive_secs is issue 18's (30 by the contract): checked once the backend has it.
    for key, secs in keep_alives.items():
        assert secs is None or 0 < secs * 2 <= 60, f"{key} = {secs}: keep it below half the smallest idle timeout"


def statements():
    for name, doc in blocks("data", "aws_iam_policy_document"):
        for statement in doc.get("statement", []):
            yield name, statement


def test_iam_policies_name_specific_resources():
    seen = set()
    for name, statement in statements():
        effect = one(statement.get("effect", ["Allow"]))
        actions = one(statement.get("actions", [[]]))
        if effect == "Deny" or "sts:AssumeRole" in actions:
            continue
        resources = one(statement.get("resources", [[]]))
        services = {a.split(":")[0] for a in actions}
        seen |= services
        for action in actions:
            assert not action.endswith(":*"), f"{name}: wildcard action {action}"
        if actions == ["lambda:ListFunctions"]:
            continue  # IAM has no resource-level permission for ListFunctions (commented inline)
        if services & {"dynamodb", "s3", "lambda"}:
            assert "*" not in resources and resources, f"{name}: {actions} on {resources}"
    assert {"dynamodb", "s3", "lambda"} <= seen


def test_the_table_matches_the_rust_store():
    (name, table), = blocks("resource", "aws_dynamodb_table")
    assert one(table["hash_key"]) == "pk" and one(table["range_key"]) == "sk"
    assert {(one(a["name"]), one(a["type"])) for a in table["attribute"]} == {("pk", "S"), ("sk", "S")}
    ttl = one(table["ttl"])
    assert one(ttl["attribute_name"]) == "expires_at" and one(ttl["enabled"]) is True
    assert one(one(table["point_in_time_recovery"])["enabled"]) is True
    records = (ROOT / "backend/src/store/dynamo/records.rs").read_text()
    assert 'TTL_ATTRIBUTE: &str = "expires_at"' in records
    assert one(variable("dynamodb_billing_mode")["default"]) == "PAY_PER_REQUEST"


def test_the_keys_bucket_is_private_encrypted_and_versioned():
    (_, block), = blocks("resource", "aws_s3_bucket_public_access_block")
    for flag in ["block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"]:
        assert one(block[flag]) is True, flag
    (_, versioning), = blocks("resource", "aws_s3_bucket_versioning")
    assert one(one(versioning["versioning_configuration"])["status"]) == "Enabled"
    assert blocks("resource", "aws_s3_bucket_server_side_encryption_configuration")


def test_every_variable_is_documented_in_the_example():
    example = (INFRA / "terraform.tfvars.example").read_text()
    names = [name for doc in parsed().values() for entry in doc.get("variable", []) for name in entry]
    assert len(names) > 10
    for name in names:
        assert re.search(rf"^{name}\s*=", example, re.M), f"{name} missing from terraform.tfvars.example"
        assert one(variable(name).get("description")), f"variable {name} has no description"


@pytest.mark.parametrize("path,context", [
    (ROOT / "backend/Dockerfile", ROOT),
    (ROOT / "pushpin/Dockerfile", ROOT / "pushpin"),
])
def test_dockerfiles_are_sound(path, context):
    steps = dockerfile(path)
    known = {"FROM", "RUN", "COPY", "WORKDIR", "USER", "ENV", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "ARG", "LABEL",
             "VOLUME"}
    assert all(word in known for word, _ in steps), steps
    assert steps[0][0] == "FROM"
    last_stage = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    users = [rest for word, rest in last_stage if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage runs as non-root"
    assert any(word == "HEALTHCHECK" for word, _ in last_stage)
    for word, rest in steps:
        if word == "COPY" and "--from=" not in rest:
            sources = [a for a in rest.split() if not a.startswith("--")][:-1]
            for source in sources:
                assert (context / source).exists(), f"{path}: COPY source {source} missing"
        if word in ("ENTRYPOINT", "CMD", "HEALTHCHECK") and "[" in rest:
            json.loads(rest[rest.index("["):])


def apt_packages(steps):
    """Packages the image's `apt-get install` lines add."""
    out = set()
    for word, rest in steps:
        for install in re.findall(r"apt-get install ([^&]*)", rest) if word == "RUN" else []:
            out |= {a for a in install.split() if not a.startswith("-")}
    return out


def last_stage(steps):
    return steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]


def test_the_backend_image_starts_with_its_defaults_as_its_user():
    steps = last_stage(dockerfile(ROOT / "backend/Dockerfile"))
    # python3 runs process fetchers (standard library only); nothing else they could import.
    assert apt_packages(steps) == {"libzmq5", "ca-certificates", "python3"}
    run = " ".join(rest for word, rest in steps if word == "RUN")
    assert "--uid 10001" in run
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(rest for word, rest in steps if word == "ENV")))
    # The default (embedded) store writes under /app/data: made for, and owned by, the user;
    # /app itself stays root-owned (WORKDIR creates nothing the user owns).
    assert env["RESTREAM_STORE__PATH"] == "/app/data/items.redb"
    assert "mkdir -p /app/data" in run and "chown restream:restream /app/data" in run
    assert ("VOLUME", "/app/data") in steps
    users = [rest for word, rest in steps if word == "USER"]
    assert users == ["restream"] and steps.index(("USER", "restream")) > steps.index(("VOLUME", "/app/data"))
    assert "chown" not in run.replace("chown restream:restream /app/data", ""), "only /app/data is the user's"
    assert env["RESTREAM_SERVER__LISTEN"] == "0.0.0.0:5000"
    assert ("HEALTHCHECK", '--interval=10s --timeout=5s --retries=3 CMD ["restream", "health"]') in steps


def test_the_pushpin_image_has_its_healthcheck_tool_and_nothing_unused():
    steps = last_stage(dockerfile(ROOT / "pushpin/Dockerfile"))
    (check,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert "CMD curl " in check
    assert apt_packages(steps) == {"pushpin", "curl"}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["pushpin"]["healthcheck"]["test"][:2] == ["CMD", "curl"]


def test_docker_compose_exposes_only_pushpin_with_healthchecks():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"pushpin", "backend", "dynamodb"}
    for name, service in services.items():
        assert "healthcheck" in service, name
        if name != "pushpin":
            assert "ports" not in service, f"{name} must stay on the compose network"
    assert services["pushpin"]["ports"] == ["127.0.0.1:7999:7999"]
    env = services["backend"]["environment"]
    assert env["RESTREAM_STORE__KIND"] == "dynamodb"  # so the image's /app/data volume stays unused
    assert services["backend"]["volumes"] == ["./compose/keys:/app/keys:ro"]


def test_docker_compose_points_the_backend_at_the_pushpin_service():
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["backend"]["environment"]
    # Every list of Pushpin endpoints is set (the defaults, 127.0.0.1, are the backend itself).
    lists = {"RESTREAM_PUSHPIN__ZMQ_PUSH_SPECS": "tcp://pushpin:5560",
             "RESTREAM_PUSHPIN__HTTP_PUBLISH_URLS": "http://pushpin:5561",
             "RESTREAM_PUSHPIN__STATS_SPECS": "tcp://pushpin:5564"}
    for key, url in lists.items():
        assert json.loads(env[key]) == [url], key
    for key, value in env.items():
        if key.startswith("RESTREAM_PUSHPIN__") and "://" in value:
            assert key in lists, f"{key} is not checked here"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) not installed")
def test_docker_compose_config_validates():
    out = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def run_entrypoint(tmp_path, env):
    """pushpin/entrypoint.sh against a copy of the template, with a stand-in `pushpin`."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    shutil.copy(ROOT / "pushpin/pushpin.conf", etc / "pushpin.conf.in")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "pushpin"
    fake.write_text("#!/bin/sh\necho started \"$@\"\n")
    fake.chmod(0o755)
    out = subprocess.run(
        ["sh", str(ROOT / "pushpin/entrypoint.sh")], capture_output=True, text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "RESTREAM_PUSHPIN_ETC": str(etc), **env},
    )
    return out, etc


def test_pushpin_config_has_no_default_key_and_private_internal_sockets():
    conf = (ROOT / "pushpin/pushpin.conf").read_text()
    settings = dict(line.split("=", 1) for line in conf.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["sig_key"] == "@SIG_KEY@"
    assert "changeme" not in settings.values()
    for key in ["push_in_spec", "stats_spec"]:
        assert settings[key].startswith("tcp://@INTERNAL_ADDR@:"), key
    # Nothing outside the container uses the SUB and command sockets: loopback always, even
    # where the publish and stats sockets face the other tasks.
    for key in ["push_in_sub_specs", "command_spec"]:
        assert settings[key].startswith("tcp://@LOCAL_ADDR@:"), key
    assert settings["push_in_http_addr"] == "@INTERNAL_ADDR@"
    assert settings["auto_cross_origin"] == "false", "the backend decides CORS"


def test_pushpin_entrypoint_needs_a_key_and_binds_loopback_by_default(tmp_path):
    for env in [{}, {"RESTREAM_SIG_KEY": "changeme"}, {"RESTREAM_SIG_KEY": "short"},
                {"RESTREAM_SIG_KEY": "a|b&c" * 5}]:
        out, _ = run_entrypoint(tmp_path, env)
        assert out.returncode == 64, (env, out)
        assert "RESTREAM_SIG_KEY" in out.stderr or "16" in out.stderr
    key = "0123456789abcdef" * 4
    (tmp_path / "key").write_text(key + "\n")
    out, etc = run_entrypoint(tmp_path, {"RESTREAM_SIG_KEY_FILE": str(tmp_path / "key")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"started --config {etc}/pushpin.conf"
    rendered = (etc / "pushpin.conf").read_text()
    assert f"\nsig_key={key}\n" in rendered and "@" not in rendered
    assert "push_in_spec=tcp://127.0.0.1:5560" in rendered and "push_in_http_addr=127.0.0.1" in rendered
    assert (etc / "pushpin.conf").stat().st_mode & 0o077 == 0, "the key is readable by Pushpin only"
    assert (etc / "routes").read_text() == "* backend:5000,over_http\n"


def test_compose_and_ecs_give_both_containers_the_same_sig_key():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert compose["secrets"]["pushpin_sig_key"]["file"] == "./compose/secrets/pushpin_sig_key"
    for name in ["pushpin", "backend"]:
        assert services[name]["secrets"] == ["pushpin_sig_key"], name
    assert services["pushpin"]["environment"]["RESTREAM_SIG_KEY_FILE"] == "/run/secrets/pushpin_sig_key"
    assert services["backend"]["environment"]["RESTREAM_PUSHPIN__SIG_KEY_FILE"] == "/run/secrets/pushpin_sig_key"
    containers = container_definitions()
    arn = "${aws_secretsmanager_secret.pushpin_sig_key.arn}"
    assert {"name": "RESTREAM_SIG_KEY", "valueFrom": arn} in containers["pushpin"]["secrets"]
    assert {"name": "RESTREAM_PUSHPIN__SIG_KEY", "valueFrom": arn} in containers["backend"]["secrets"]
    assert "changeme" not in (INFRA / "ecs.tf").read_text()
