"""Reading the deployment files for the offline checks: the terraform (python-hcl2), its ECS
container definitions with locals resolved, variable validations, and Dockerfiles."""
import ast
import math
import pathlib
import re

import hcl2

ROOT = pathlib.Path(__file__).resolve().parents[2]
INFRA = ROOT / "infrastructure"
TF_FILES = sorted(INFRA.glob("*.tf"))


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


def variable_accepts(name, value):
    """Evaluates the validation conditions of variable `name` for `value` (the simple
    comparisons and floor() this terraform uses)."""
    ok = True
    for validation in variable(name).get("validation", []):
        condition = one(validation["condition"])
        expr = condition.removeprefix("${").removesuffix("}")
        expr = expr.replace("&&", " and ").replace("||", " or ").replace(f"var.{name}", repr(value))
        assert "var." not in expr, f"cannot evaluate {condition}"
        ok = ok and eval(expr, {"__builtins__": {}}, {"floor": math.floor})  # noqa: S307 (our own terraform)
    return ok


def blocks(kind, type_name):
    """Every `kind "type_name" "name" {...}` across the .tf files, as (name, body)."""
    out = []
    for doc in parsed().values():
        for entry in doc.get(kind, []):
            for name, body in entry.get(type_name, {}).items():
                out.append((name, body))
    return out


def resource(type_name, name):
    found = [body for n, body in blocks("resource", type_name) if n == name]
    assert len(found) == 1, f"{type_name}.{name} declared {len(found)} times"
    return found[0]


def local(name):
    """The value of `local.name`, as python-hcl2 reads it."""
    found = [entry[name] for doc in parsed().values() for entry in doc.get("locals", []) if name in entry]
    assert len(found) == 1, f"local {name} declared {len(found)} times"
    return one(found[0])


def _resolve(value):
    """Replaces "${local.x}" by the local's value; HCL's escaped quotes become quotes."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{local\.(\w+)\}", value)
        if whole:
            return _resolve(local(whole.group(1)))
        return value.replace('\\"', '"')
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items() if not k.startswith("__")}
    return value


def container_definitions():
    """The task definition's containers by name: `jsonencode([...])` read back, locals
    resolved; references to variables and resources stay "${...}" strings."""
    (_, task), = blocks("resource", "aws_ecs_task_definition")
    text = one(task["container_definitions"])
    inner = text.removeprefix("${jsonencode(").removesuffix(")}")
    containers = _resolve(ast.literal_eval(inner))
    return {c["name"]: c for c in containers}


def environment(container):
    env = container["environment"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"{container['name']}: a variable set twice"
    return {e["name"]: e["value"] for e in env}


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
