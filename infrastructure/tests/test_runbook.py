"""The operator's path, checked offline: the Apex project and the script that gives it the role
terraform made, the fetchers' Lambda packages (python3.12, standard library only), and every
command docs/deploy.md tells the operator to run (each is known here, flag by flag; AWS CLI
flags against botocore's service models)."""
import ast
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import textwrap

import botocore.session
import jsonschema
import pytest
import yaml
from botocore import xform_name

from tfparse import ROOT, blocks, container_definitions, dockerfile, one, parsed, variable

DOC = ROOT / "docs/deploy.md"
MARK = "# checked by infrastructure/tests/test_runbook.py"
FOLDERS = [d for d in sorted((ROOT / "functions").iterdir()) if d.is_dir() and not d.name.startswith((".", "_"))]
# Modules Python 3.12 (the Lambda runtime) no longer has, though 3.11 does.
REMOVED_IN_312 = {"asynchat", "asyncore", "distutils", "imp", "smtpd"}
ROLE = "arn:aws:iam::123456789012:role/restream-fetcher"


def handler_exists(folder, handler):
    module, function = handler.split(".")
    source = folder / f"{module}.py"
    assert source.exists(), f"{source} missing"
    tree = ast.parse(source.read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert function in names, f"{source} has no {function}()"


def project_schema():
    return json.loads((ROOT / "schemas/apex-project.schema.json").read_text())


def test_apex_project_and_functions_are_valid():
    project = json.loads((ROOT / "project.json").read_text())
    jsonschema.validate(project, project_schema())
    function_schema = json.loads((ROOT / "schemas/apex-function.schema.json").read_text())
    assert len(FOLDERS) >= 5
    for folder in FOLDERS:
        config = {}
        if (folder / "function.json").exists():
            config = json.loads((folder / "function.json").read_text())
            jsonschema.validate(config, function_schema)
        handler_exists(folder, config.get("handler", project["handler"]))
        assert config.get("runtime", project["runtime"]) == "python3.12", folder.name
    assert project["runtime"] == one(variable("lambda_runtime")["default"]) == "python3.12"
    assert sorted(one(variable("functions")["default"])) == [f.name for f in FOLDERS], "every fetcher has its log group"
    # The role is the account's: never committed. Apex refuses a project without one.
    assert "role" not in project and "region" not in project


def test_schemas_reject_what_apex_would_misdeploy():
    schema = project_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "restreamables", "runtime": "python3.12", "handler": "main.handle",
                             "memory": 128, "timeout": 10}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "restreamables", "runtime": "python3.12", "handler": "main.lambda_function",
                             "memory": 128, "timeout": 10, "role": "REPLACE_ME"}, schema)


def run_apex_project(tmp_path, role, region="eu-west-1"):
    """scripts/apex-project.sh in a copy of the repository's layout, with a `terraform` that
    answers the two outputs it asks for (and fails on anything else)."""
    (tmp_path / "scripts").mkdir(exist_ok=True)
    (tmp_path / "infrastructure").mkdir(exist_ok=True)
    (tmp_path / "scripts/apex-project.sh").write_text((ROOT / "scripts/apex-project.sh").read_text())
    (tmp_path / "project.json").write_text((ROOT / "project.json").read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "terraform"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = "-chdir={tmp_path}/infrastructure" ] && [ "$2 $3" = "output -raw" ] || exit 2
        case "$4" in
          fetcher_role_arn) printf '%s' '{role}' ;;
          region) printf '%s' '{region}' ;;
          *) echo "no output $4" >&2; exit 1 ;;
        esac
        """))
    fake.chmod(0o755)
    return subprocess.run(["sh", str(tmp_path / "scripts/apex-project.sh")], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, cwd=tmp_path / "infrastructure")


def test_apex_project_script_gives_apex_the_role_terraform_made(tmp_path):
    outputs = {name for doc in parsed().values() for entry in doc.get("output", []) for name in entry}
    assert {"fetcher_role_arn", "region"} <= outputs
    role_output = [entry["fetcher_role_arn"] for doc in parsed().values() for entry in doc.get("output", [])
                   if "fetcher_role_arn" in entry]
    assert one(role_output[0]["value"]) == "${aws_iam_role.fetcher.arn}"
    assert "count" not in dict(blocks("resource", "aws_iam_role"))["fetcher"], "the role exists without deploy_functions"
    out = run_apex_project(tmp_path, ROLE)
    assert out.returncode == 0, out.stderr
    written = json.loads((tmp_path / "project.aws.json").read_text())
    assert written == {**json.loads((ROOT / "project.json").read_text()), "role": ROLE, "region": "eu-west-1"}
    jsonschema.validate(written, project_schema())
    # What Apex validates as non-zero for each function (function.json fills runtime/handler).
    for folder in FOLDERS:
        config = {**written, **json.loads((folder / "function.json").read_text())}
        assert all(config.get(k) for k in ["runtime", "memory", "timeout", "role", "handler"]), folder.name
    assert "project.aws.json" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.parametrize("role,region", [("", "eu-west-1"), ("arn:aws:iam::123:role/x", "eu-west-1"),
                                         (ROLE, ""), ("None", "eu-west-1")])
def test_apex_project_script_refuses_what_is_not_a_role(tmp_path, role, region):
    out = run_apex_project(tmp_path, role, region)
    assert out.returncode != 0 and "apex-project" in out.stderr
    assert not (tmp_path / "project.aws.json").exists()


def imported_modules(source):
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{source}: relative import"
            yield node.module.split(".")[0]


def packaged_files(folder):
    """What terraform's archive_file zips: the folder minus lambda.tf's excludes."""
    (_, archive), = blocks("data", "archive_file")
    excludes = set(one(archive["excludes"]))
    out = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if path.is_file() and not any("/".join(parts[:i + 1]) in excludes for i in range(len(parts))):
            out.append(path)
    return out


def test_every_fetcher_package_is_standard_library_python_312():
    stdlib = set(sys.stdlib_module_names) - REMOVED_IN_312
    for folder in FOLDERS:
        files = packaged_files(folder)
        names = {p.relative_to(folder).as_posix() for p in files if "__pycache__" not in p.parts}
        assert "main.py" in names and not any(n.startswith(("test_", "testdata/")) for n in names), names
        own = {p.stem for p in files if p.suffix == ".py"}
        for source in (p for p in files if p.suffix == ".py"):
            outside = set(imported_modules(source)) - stdlib - own
            assert not outside, f"{source.relative_to(ROOT)} imports {sorted(outside)}: not in Python 3.12's standard library"


def fetcher_metadata():
    out = {}
    for folder in FOLDERS:
        spec = importlib.util.spec_from_file_location(f"runbook_fetcher_{folder.name}", folder / "main.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        metadata = module.lambda_function({"call": "metadata"}, None)
        out[metadata["name"]] = set(metadata.get("keys", []))
    return out


# --- docs/deploy.md, command by command ---

def code_blocks():
    text = DOC.read_text()
    return [textwrap.dedent(b) for b in re.findall(r"^[ \t]*```(?:bash|sh)\n(.*?)^[ \t]*```", text, re.M | re.S)]


def commands(block):
    """(argv, heredoc body or None) for each simple command of a shell block."""
    lines = iter(block.splitlines())
    for line in lines:
        words = shlex.split(line, comments=True)
        if not words:
            continue
        body = None
        heredoc = [w for w in words if w.startswith("<<")]
        if heredoc:
            end = heredoc[0][2:]
            body = "\n".join(iter(lambda: next(lines), end))
            words = [w for w in words if not w.startswith("<<")]
        current = []
        for word in words + ["|"]:
            if word in ("|", "&&", ";"):
                if current:
                    yield current, body
                current = []
            else:
                current.append(word)


class Runbook:
    """What earlier commands made, for the later ones to use."""

    def __init__(self):
        self.repositories = set()
        self.images = set()
        self.outputs = {name for doc in parsed().values() for entry in doc.get("output", []) for name in entry}
        self.resources = {f"{t}.{n}" for doc in parsed().values() for entry in doc.get("resource", [])
                          for t, named in entry.items() for n in named}
        self.botocore = botocore.session.get_session()


def substitutions(word):
    return re.findall(r"\$\(([^()]*)\)", word)


def check(argv, body, book):
    for word in argv:
        for inner in substitutions(word):
            for sub, _ in commands(inner):
                check(sub, None, book)
    head, args = argv[0], argv[1:]
    if re.fullmatch(r"\w+=.*", head) or head == "export":
        return
    checker = CHECKERS.get(head)
    assert checker, f"docs/deploy.md runs `{' '.join(argv)}`, which test_runbook.py does not know"
    checker(args, body, book)


def check_aws(args, body, book):
    service, operation, rest = args[0], args[1], args[2:]
    flags = {a[2:] for a in rest if a.startswith("--")}
    custom = {("s3", "cp"): {"sse"}, ("logs", "tail"): {"since", "follow", "filter-pattern"},
              ("ecr", "get-login-password"): set()}
    if (service, operation) in custom:
        assert flags <= custom[service, operation], (service, operation, flags)
        return
    if operation == "wait":
        waiter = book.botocore.get_waiter_model(service).get_waiter(
            "".join(part.capitalize() for part in rest[0].split("-")))
        operation = xform_name(waiter.operation, "-")
    model = book.botocore.get_service_model(service)
    names = {xform_name(name, "-"): name for name in model.operation_names}
    assert operation in names, f"aws {service} has no {operation}"
    shape = model.operation_model(names[operation]).input_shape
    members = {xform_name(m, "-") for m in (shape.members if shape else {})}
    assert flags <= members | {"query", "output", "region"}, f"aws {service} {operation}: {flags - members}"


def check_docker(args, body, book):
    if args[0] == "build":
        options = dict(zip(args[1:-1:2], args[2:-1:2]))
        context = (ROOT / args[-1]).resolve()
        path = ROOT / options.get("-f", f"{args[-1]}/Dockerfile")
        expected_context = {ROOT / "backend/Dockerfile": ROOT, ROOT / "pushpin/Dockerfile": ROOT / "pushpin"}
        assert expected_context[path.resolve()] == context, (path, context)
        assert dockerfile(path)[0][0] == "FROM"
        (_, task), = blocks("resource", "aws_ecs_task_definition")
        arch = one(one(task["runtime_platform"])["cpu_architecture"])
        assert options["--platform"] == {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}[arch]
        tag = options["-t"]
        assert tag.split("/", 1)[1].split(":")[0] in book.repositories, f"{tag}: no repository created for it"
        book.images.add(tag)
    elif args[0] == "push":
        assert args[1] in book.images, f"pushes {args[1]}, which no command built"
    elif args[0] == "login":
        assert args[1:4] == ["--username", "AWS", "--password-stdin"], args
    elif args[0] == "compose":
        assert args[1:] == ["up", "--build"], args
    else:
        pytest.fail(f"docker {args[0]}")


def check_terraform(args, body, book):
    assert args[0] == "-chdir=infrastructure", "run from the repository root"
    command, rest = args[1], args[2:]
    if command == "output":
        assert rest[0] == "-raw" and rest[1] in book.outputs, rest
    elif command == "apply":
        for option in rest:
            address = option.removeprefix("-replace=")
            assert address != option and address in book.resources, option
    else:
        assert command == "init" and not rest, args


def check_apex(args, body, book):
    assert args[:3] == ["deploy", "--env", "aws"], "Apex needs project.aws.json (scripts/apex-project.sh)"
    assert "project.aws.json" in (ROOT / "scripts/apex-project.sh").read_text()
    assert set(args[3:]) <= {f.name for f in FOLDERS} | {"<dir>"}, args


def check_cat(args, body, book):
    # The keys example: channels that exist, with the key names their fetchers declare.
    assert args == [">", "keys.json"] and body
    declared = fetcher_metadata()
    for channel, keys in json.loads(body).items():
        assert channel in declared, f"no fetcher serves {channel}"
        assert set(keys) == declared[channel], (channel, set(keys), declared[channel])


def check_secret_file(args, body, book):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert args[-1] == compose["secrets"]["pushpin_sig_key"]["file"].removeprefix("./")


CHECKERS = {
    "aws": check_aws,
    "docker": check_docker,
    "terraform": check_terraform,
    "apex": check_apex,
    "cat": check_cat,
    "cp": lambda args, body, book: [(ROOT / args[0]).is_file() or pytest.fail(args[0]),
                                    (ROOT / args[1]).parent.is_dir() or pytest.fail(args[1])],
    "sh": lambda args, body, book: (args == ["scripts/apex-project.sh"]) or pytest.fail(args),
    "openssl": lambda args, body, book: [args[:3] == ["rand", "-hex", "32"] or pytest.fail(args),
                                         check_secret_file(args, body, book)],
    "chmod": check_secret_file,
    "rm": lambda args, body, book: args == ["keys.json"] or pytest.fail(args),
}


def test_every_runbook_command_is_one_this_test_knows():
    blocks_ = code_blocks()
    assert len(blocks_) >= 8
    book = Runbook()
    count = 0
    for block in blocks_:
        assert block.startswith(MARK), f"a shell block of docs/deploy.md lacks '{MARK}':\n{block}"
        for argv, body in commands(block):
            check(argv, body, book)
            if argv[:3] == ["aws", "ecr", "create-repository"]:
                book.repositories.add(argv[-1])
            count += 1
    assert count >= 25
    # Commands quoted in the prose are held to the same rules.
    for span in re.findall(r"`((?:terraform|aws|apex|docker|sh) [^`]*)`", DOC.read_text()):
        for argv, body in commands(span):
            check(argv, body, book)


def test_the_runbook_names_every_image_the_task_runs_and_every_secret_it_reads():
    text = DOC.read_text()
    assert set(container_definitions()) == {"pushpin", "backend"}
    for path in ["backend/Dockerfile", "pushpin/"]:
        assert path in text
    for name, _ in blocks("resource", "random_password"):
        assert f"random_password.{name}" in text, name


def test_the_runbook_quotes_the_numbers_terraform_uses():
    text = " ".join(DOC.read_text().split())
    (_, target), = blocks("resource", "aws_lb_target_group")
    (_, alb), = blocks("resource", "aws_lb")
    stop = {c["stopTimeout"] for c in container_definitions().values()}
    assert one(alb["idle_timeout"]) == "${var.alb_idle_timeout}"
    facts = {
        f"`alb_idle_timeout` ({one(variable('alb_idle_timeout')['default'])} s)": True,
        f"after {one(target['deregistration_delay'])} s (`deregistration_delay`)": True,
        f"`stopTimeout` ({stop.pop()} s)": not stop,
        f"`desired_count` (default {one(variable('desired_count')['default'])};": True,
        "(`deployment_maximum_percent = 200`)":
            one(dict(blocks("resource", "aws_ecs_service"))["restream"]["deployment_maximum_percent"]) == 200,
    }
    for phrase, holds in facts.items():
        assert holds and phrase in text, phrase


def test_the_runbook_links_resolve():
    text = DOC.read_text()
    links = re.findall(r"\]\(([^)#:]+\.md)(#[^)]*)?\)", text)
    assert len(links) >= 4
    for path, anchor in links:
        target = (DOC.parent / path).resolve()
        assert target.is_file(), path
        if anchor:
            headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                        for h in re.findall(r"^#+ (.*)$", target.read_text(), re.M)}
            assert anchor[1:] in headings, f"{path}{anchor}"


def test_unknown_commands_and_flags_are_refused():
    book = Runbook()
    book.repositories.add("restream-backend")
    bad = [
        ["aws", "ecs", "update-service", "--cluster", "c", "--servise", "s"],
        ["aws", "ecs", "restart-service", "--cluster", "c"],
        ["terraform", "-chdir=infrastructure", "output", "-raw", "no_such_output"],
        ["terraform", "-chdir=infrastructure", "apply", "-replace=random_password.nope"],
        ["docker", "build", "--platform", "linux/arm64", "-f", "backend/Dockerfile", "-t", "r/restream-backend:1", "."],
        ["docker", "build", "--platform", "linux/amd64", "-f", "backend/Dockerfile", "-t", "r/restream-backend:1",
         "backend/"],
        ["docker", "push", "r/never-built:1"],
        ["apex", "deploy"],
        ["kubectl", "apply"],
    ]
    for argv in bad:
        with pytest.raises((AssertionError, pytest.fail.Exception, KeyError)):
            check(argv, None, book)
    with pytest.raises(AssertionError):
        check(["cat", ">", "keys.json"], '{"nyt-top": {"apikey": "x"}}', book)
