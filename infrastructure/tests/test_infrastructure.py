"""Offline checks of the deployment files: terraform parses and passes a security scan, only
the client port is public, IAM names specific resources, the table matches the Rust store,
Dockerfiles and docker-compose.yml are sound, and the Apex project is valid.

terraform init/validate and docker builds need the network or an engine; these checks do not.
"""
import ast
import json
import pathlib
import re
import shutil
import subprocess
import sys

import hcl2
import jsonschema
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
INFRA = ROOT / "infrastructure"
TF_FILES = sorted(INFRA.glob("*.tf"))
PUBLIC_PORT = "${local.public_port}"
PRIVATE_PORTS = {5000, 5560, 5561, 5562, 5563, 5564}


def one(value):
    """python-hcl2 8.x wraps attribute values in lists."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def parsed():
    return {path.name: hcl2.load(path.open()) for path in TF_FILES}


def variable(name):
    """The body of `variable "name" {...}`."""
    found = [entry[name] for doc in parsed().values() for entry in doc.get("variable", []) if name in entry]
    assert len(found) == 1, f"variable {name} declared {len(found)} times"
    return found[0]


def blocks(kind, type_name):
    """Every `kind "type_name" "name" {...}` across the .tf files, as (name, body)."""
    out = []
    for doc in parsed().values():
        for entry in doc.get(kind, []):
            for name, body in entry.get(type_name, {}).items():
                out.append((name, body))
    return out


def test_there_is_terraform_and_every_file_parses():
    assert len(TF_FILES) >= 8, TF_FILES
    for path in TF_FILES:
        with path.open() as f:
            hcl2.load(f)  # raises with line and column on a syntax error


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


def test_only_the_client_port_is_open_to_the_world():
    rules = blocks("resource", "aws_vpc_security_group_ingress_rule")
    assert rules
    for name, rule in rules:
        ports = {one(rule.get("from_port")), one(rule.get("to_port"))}
        cidr = one(rule.get("cidr_ipv4"))
        if cidr is not None:
            # Client-facing: only the load balancer's public port, from the allowed CIDRs.
            assert ports == {PUBLIC_PORT}, (name, rule)
            assert one(rule["security_group_id"]) == "${aws_security_group.alb.id}", name
        else:
            assert one(rule.get("referenced_security_group_id")), (name, rule)
        assert not ports & PRIVATE_PORTS, f"{name} opens a private port: {ports}"
    for name, group in blocks("resource", "aws_security_group"):
        assert "ingress" not in group, f"{name}: use separate ingress rules"
    for name, rule in blocks("resource", "aws_vpc_security_group_ingress_rule"):
        assert one(rule.get("cidr_ipv6")) is None, name
    assert one(variable("allowed_client_cidrs")["default"]) == ["0.0.0.0/0"]


def test_public_listeners_are_the_client_port_only():
    ports = sorted(str(one(l["port"])) for _, l in blocks("resource", "aws_lb_listener"))
    assert ports == ["443", "7999"], ports  # one of them, by certificate_arn
    for name, target in blocks("resource", "aws_lb_target_group"):
        assert one(target["port"]) == 7999, name


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


def dockerfile(path):
    """(instruction, arguments) pairs, continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("path,context", [
    (ROOT / "backend/Dockerfile", ROOT),
    (ROOT / "pushpin/Dockerfile", ROOT / "pushpin"),
])
def test_dockerfiles_are_sound(path, context):
    steps = dockerfile(path)
    known = {"FROM", "RUN", "COPY", "WORKDIR", "USER", "ENV", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "ARG", "LABEL"}
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
    assert env["RESTREAM_STORE__KIND"] == "dynamodb"
    assert services["backend"]["volumes"] == ["./compose/keys:/app/keys:ro"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) not installed")
def test_docker_compose_config_validates():
    out = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def handler_exists(folder, handler):
    module, function = handler.split(".")
    source = folder / f"{module}.py"
    assert source.exists(), f"{source} missing"
    tree = ast.parse(source.read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert function in names, f"{source} has no {function}()"


def test_apex_project_and_functions_are_valid():
    project = json.loads((ROOT / "project.json").read_text())
    jsonschema.validate(project, json.loads((ROOT / "schemas/apex-project.schema.json").read_text()))
    function_schema = json.loads((ROOT / "schemas/apex-function.schema.json").read_text())
    folders = [d for d in sorted((ROOT / "functions").iterdir()) if d.is_dir() and not d.name.startswith((".", "_"))]
    assert len(folders) >= 5
    for folder in folders:
        config = {}
        if (folder / "function.json").exists():
            config = json.loads((folder / "function.json").read_text())
            jsonschema.validate(config, function_schema)
        handler_exists(folder, config.get("handler", project["handler"]))
    assert sorted(one(variable("functions")["default"])) == [f.name for f in folders], "terraform deploys every fetcher"


def test_schemas_reject_what_apex_would_misdeploy():
    schema = json.loads((ROOT / "schemas/apex-project.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "restreamables", "runtime": "python3.12", "handler": "main.handle",
                             "memory": 128, "timeout": 10}, schema)


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
    for key in ["push_in_spec", "push_in_sub_specs", "stats_spec", "command_spec"]:
        assert settings[key].startswith("tcp://@INTERNAL_ADDR@:"), key
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
    ecs = (INFRA / "ecs.tf").read_text()
    arn = "aws_secretsmanager_secret.pushpin_sig_key.arn"
    assert f'{{ name = "RESTREAM_SIG_KEY", valueFrom = {arn} }}' in ecs
    assert f'{{ name = "RESTREAM_PUSHPIN__SIG_KEY", valueFrom = {arn} }}' in ecs
    assert "changeme" not in ecs
    (_, password), = blocks("resource", "random_password")
    assert one(password["length"]) >= 32 and one(password["special"]) is False
