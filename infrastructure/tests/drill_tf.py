"""The .tf files of a directory as `terraform plan` would see the parts the deploy drill runs:
`var.*` (declared defaults plus values the test chooses), `local.*`, and resources, whose
attributes evaluate to what the block sets, or to deterministic stand-ins (`arn`/`id` built
from the resource; a `random_password`'s `result` is a generated password of its length).
Expressions are evaluated by drill_hcl.py.
"""
import json
import pathlib
import secrets
import string

import hcl2

from drill_hcl import HclError, Parser, template_parts, unescape

ACCOUNT = "123456789012"


class Terraform:
    """The .tf files of a directory, evaluated with `variables` over the declared defaults."""

    def __init__(self, directory, variables):
        self.dir = pathlib.Path(directory)
        self.docs = [hcl2.load(p.open()) for p in sorted(self.dir.glob("*.tf"))]
        self.vars = {}
        for doc in self.docs:
            for entry in doc.get("variable", []):
                for name, body in entry.items():
                    if name in variables:
                        self.vars[name] = variables[name]
                    elif "default" in body:
                        self.vars[name] = self.value(body["default"][0], {})
        missing = sorted({n for d in self.docs for e in d.get("variable", []) for n in e} - set(self.vars))
        if missing:
            raise HclError(f"required variables without a value: {missing}")
        self.locals_src = {k: v[0] for d in self.docs for e in d.get("locals", []) for k, v in e.items()
                           if not k.startswith("__")}
        self.locals, self.generated, self.evaluating = {}, {}, set()

    def blocks(self, kind, type_name):
        return {name: body for d in self.docs for e in d.get(kind, []) for name, body in e.get(type_name, {}).items()}

    def resource(self, type_name, name):
        found = self.blocks("resource", type_name)
        if name not in found:
            raise HclError(f"no resource {type_name}.{name}")
        return found[name]

    def value(self, raw, scope):
        """A python-hcl2 value with every string's interpolations evaluated."""
        if isinstance(raw, list):
            return [self.value(x, scope) for x in raw]
        if isinstance(raw, dict):
            return {k: self.value(v, scope) for k, v in raw.items() if not k.startswith("__")}
        if not isinstance(raw, str):
            return raw
        parts = template_parts(raw)
        if len(parts) == 2 and parts[0][0] == "" and parts[1] == ("", None):
            return Parser(self, parts[0][1], scope).parse()
        out = []
        for literal, expr in parts:
            out.append(unescape(literal))
            if expr is not None:
                v = Parser(self, expr, scope).parse()
                out.append(v if isinstance(v, str) else json.dumps(v))
        return "".join(out)

    def attribute(self, body, name, default=None):
        """An attribute of a block (python-hcl2 wraps each in a list), evaluated."""
        return self.value(body[name][0], {}) if name in body else default

    def root(self, name):
        if name == "var":
            return Namespace(lambda n: self.vars[n])
        if name == "local":
            return Namespace(self.local)
        if name == "path":
            return {"module": str(self.dir), "root": str(self.dir), "cwd": str(self.dir)}
        if name == "terraform":
            return {"workspace": "default"}
        if name == "data":
            return Namespace(lambda t: Namespace(lambda n: Resource(self, "data", t, n)))
        if self.blocks("resource", name):
            return Namespace(lambda n: Resource(self, "resource", name, n))
        raise HclError(f"unknown reference {name}")

    def local(self, name):
        if name not in self.locals:
            if name in self.evaluating:
                raise HclError(f"local.{name} refers to itself")
            self.evaluating.add(name)
            self.locals[name] = self.value(self.locals_src[name], {})
            self.evaluating.discard(name)
        return self.locals[name]

    def attr(self, value, name):
        if isinstance(value, (Namespace, Resource)):
            return value.get(name)
        if isinstance(value, dict):
            return value[name]
        raise HclError(f"cannot read .{name} of {value!r}")

    def secret_values(self):
        """Secrets Manager ARN -> the value its secret version holds (what ECS injects)."""
        out = {}
        for name, body in self.blocks("resource", "aws_secretsmanager_secret_version").items():
            out[self.attribute(body, "secret_id")] = self.attribute(body, "secret_string")
        return out

    def password(self, key, length):
        if key not in self.generated:
            alphabet = string.ascii_letters + string.digits
            self.generated[key] = "".join(secrets.choice(alphabet) for _ in range(length))
        return self.generated[key]


class Namespace:
    def __init__(self, get):
        self.get = get


class Resource:
    """`type.name` of a resource or data source: its attributes or their stand-ins."""

    def __init__(self, tf, kind, type_name, name):
        self.tf, self.kind, self.type, self.name = tf, kind, type_name, name
        self.body = tf.blocks(kind, type_name).get(name)
        if self.body is None:
            raise HclError(f"no {kind} {type_name}.{name}")

    def label(self):
        for key in ("name", "bucket", "name_prefix", "family"):
            if key in self.body:
                return str(self.tf.attribute(self.body, key))
        return self.name

    def get(self, attr):
        if attr in self.body and attr not in ("id", "arn"):
            return self.tf.attribute(self.body, attr)
        if self.type.startswith("random_") and attr == "result":
            length = self.tf.attribute(self.body, "length", 32)
            return self.tf.password(f"{self.type}.{self.name}", int(length))
        service = self.type.split("_")[1]
        arn = f"arn:aws:{service}:{self.tf.vars.get('region', 'us-east-1')}:{ACCOUNT}:{self.type}/{self.name}"
        if attr == "arn" or (attr == "id" and self.type == "aws_secretsmanager_secret"):
            return arn
        if attr in ("id", "name"):
            return self.label()
        if attr == "json":
            return "{}"
        return f"{self.type}.{self.name}.{attr}"
