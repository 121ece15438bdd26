"""HCL expressions as python-hcl2 8.x leaves them (`"${...}"` strings, with nested lists and
objects in Python literal form), evaluated the way terraform would for the constructs the
deployment files use: references, templates, conditionals, operators, `for` expressions and
the common functions. `model` (drill_tf.Terraform) resolves references; an unknown function
or reference raises, so a construct the drill does not understand fails loudly.
"""
import ast
import json

KEYWORDS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


class HclError(Exception):
    pass


def unescape(text):
    """HCL string escapes python-hcl2 leaves in place (`\\"`, `\\\\`, `\\n`, `$${`)."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append({"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}.get(text[i + 1], "\\" + text[i + 1]))
            i += 2
        elif text.startswith("$${", i):
            out.append("${")
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _end_of_string(s, i):
    """Index after the quoted string starting at s[i] (nested `${...}` may hold quotes)."""
    quote, j = s[i], i + 1
    while j < len(s):
        if s[j] == "\\":
            j += 2
        elif s[j] == quote:
            return j + 1
        elif s.startswith("${", j) and not s.startswith("$${", j - 1):
            j = _end_of_interpolation(s, j + 2)
        else:
            j += 1
    raise HclError(f"unterminated string in {s!r}")


def _end_of_interpolation(s, j):
    """Index after the `}` closing an interpolation whose body starts at s[j]."""
    depth = 1
    while j < len(s):
        c = s[j]
        if c in "'\"":
            j = _end_of_string(s, j)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise HclError(f"unterminated interpolation in {s!r}")


def template_parts(text):
    """[(literal, expression-or-None)] of a string with `${...}` interpolations."""
    parts, i, start = [], 0, 0
    while i < len(text):
        if text.startswith("$${", i):
            i += 3
        elif text.startswith("${", i):
            end = _end_of_interpolation(text, i + 2)
            parts.append((text[start:i], text[i + 2:end - 1]))
            i = start = end
        else:
            i += 1
    parts.append((text[start:], None))
    return parts


def tokenize(src):
    tokens, i = [], 0
    two = ("==", "!=", "<=", ">=", "&&", "||", "=>", "...")
    while i < len(src):
        c = src[i]
        if c.isspace():
            i += 1
        elif c in "'\"":
            end = _end_of_string(src, i)
            tokens.append(("str", src[i:end]))
            i = end
        elif c.isdigit():
            j = i
            while j < len(src) and (src[j].isdigit() or src[j] == "."):
                j += 1
            tokens.append(("num", src[i:j]))
            i = j
        elif c.isalpha() or c == "_":
            j = i
            while j < len(src) and (src[j].isalnum() or src[j] in "_-"):
                j += 1
            tokens.append(("id", src[i:j]))
            i = j
        else:
            op = next((t for t in two if src.startswith(t, i)), c)
            tokens.append(("op", op))
            i += len(op)
    return tokens


class Parser:
    """Recursive descent over one expression; evaluates as it parses (no AST)."""

    def __init__(self, model, src, scope):
        self.model, self.src, self.scope = model, src, scope
        self.toks, self.pos = tokenize(src), 0

    def peek(self, value=None):
        tok = self.toks[self.pos] if self.pos < len(self.toks) else ("end", "")
        return tok if value is None or tok[1] == value else None

    def take(self, value=None):
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise HclError(f"expected {value!r} at {tok!r} in {self.src!r}")
        self.pos += 1
        return tok

    def parse(self):
        value = self.expr()
        if self.peek()[0] != "end":
            raise HclError(f"unexpected {self.peek()!r} in {self.src!r}")
        return value

    def expr(self):
        cond = self.binary(0)
        if self.peek("?"):
            self.take("?")
            yes = self.expr()
            self.take(":")
            no = self.expr()
            return yes if cond else no
        return cond

    LEVELS = [("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%")]

    def binary(self, level):
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self.LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = {
                "||": lambda: left or right, "&&": lambda: left and right,
                "==": lambda: left == right, "!=": lambda: left != right,
                "<": lambda: left < right, ">": lambda: left > right,
                "<=": lambda: left <= right, ">=": lambda: left >= right,
                "+": lambda: left + right, "-": lambda: left - right,
                "*": lambda: left * right, "/": lambda: left / right, "%": lambda: left % right,
            }[op]()
        return left

    def unary(self):
        if self.peek("!"):
            self.take()
            return not self.unary()
        if self.peek("-"):
            self.take()
            return -self.unary()
        return self.postfix(self.primary())

    def postfix(self, value):
        while True:
            if self.peek("."):
                self.take()
                value = self.model.attr(value, self.take()[1])
            elif self.peek("["):
                self.take()
                index = self.expr()
                self.take("]")
                value = value[int(index) if isinstance(value, list) else index]
            else:
                return value

    def primary(self):
        kind, text = self.take()
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "str":
            return self.model.value(ast.literal_eval(text), self.scope)
        if kind == "id":
            if text in KEYWORDS:
                return KEYWORDS[text]
            if self.peek("("):
                return self.call(text)
            if text in self.scope:
                return self.scope[text]
            return self.model.root(text)
        if text == "(":
            value = self.expr()
            self.take(")")
            return value
        if text == "[":
            return self.collection("]", self.list_items)
        if text == "{":
            return self.collection("}", self.object_items)
        raise HclError(f"unexpected {text!r} in {self.src!r}")

    def collection(self, close, items):
        if self.peek("for"):
            return self.for_expr(close)
        out = items(close)
        self.take(close)
        return out

    def list_items(self, close):
        out = []
        while not self.peek(close):
            out.append(self.expr())
            if self.peek(","):
                self.take()
        return out

    def object_items(self, close):
        out = {}
        while not self.peek(close):
            kind, text = self.take()
            key = ast.literal_eval(text) if kind == "str" else text
            key = self.model.value(key, self.scope) if kind == "str" else key
            self.take(":" if self.peek(":") else "=")
            out[key] = self.expr()
            if self.peek(","):
                self.take()
        return out

    def for_expr(self, close):
        self.take("for")
        names = [self.take()[1]]
        if self.peek(","):
            self.take()
            names.append(self.take()[1])
        self.take("in")
        source = self.expr()
        self.take(":")
        body_start = self.pos
        pairs = list(source.items()) if isinstance(source, dict) else list(enumerate(source))
        out = [] if close == "]" else {}
        for key, item in pairs:
            scope = dict(self.scope, **({names[0]: item} if len(names) == 1 else {names[0]: key, names[1]: item}))
            sub = Parser(self.model, self.src, scope)
            sub.toks, sub.pos = self.toks, body_start
            if close == "]":
                value = sub.expr()
            else:
                k = sub.expr()
                sub.take("=>")
                value = (k, sub.expr())
            keep = True
            if sub.peek("if"):
                sub.take()
                keep = sub.expr()
            end = sub.pos
            if keep:
                out.append(value) if close == "]" else out.__setitem__(*value)
        if not pairs:  # skip the body unevaluated
            depth = 0
            while not (depth == 0 and self.peek(close)):
                t = self.take()[1]
                depth += t in "([{"
                depth -= t in ")]}"
            end = self.pos
        self.pos = end
        self.take(close)
        return out

    def call(self, name):
        self.take("(")
        args = self.list_items(")")
        self.take(")")
        if name not in FUNCTIONS:
            raise HclError(f"the drill does not know the terraform function {name}()")
        return FUNCTIONS[name](*args)


def _format(fmt, *args):
    return fmt.replace("%%", "\0") % tuple(args) if "%" in fmt else fmt


FUNCTIONS = {
    "jsonencode": lambda v: json.dumps(v, separators=(",", ":")),
    "jsondecode": json.loads,
    "concat": lambda *ls: [x for l in ls for x in l],
    "merge": lambda *ds: {k: v for d in ds for k, v in (d or {}).items()},
    "tostring": lambda v: v if isinstance(v, str) else json.dumps(v),
    "tonumber": lambda v: float(v) if "." in str(v) else int(v),
    "tolist": list, "toset": lambda v: sorted(set(v)), "tomap": dict,
    "length": len, "keys": lambda d: sorted(d), "values": lambda d: [d[k] for k in sorted(d)],
    "lookup": lambda d, k, default=None: d.get(k, default),
    "contains": lambda l, v: v in l, "element": lambda l, i: l[i % len(l)],
    "join": lambda sep, l: sep.join(l), "split": lambda sep, s: s.split(sep),
    "replace": lambda s, a, b: s.replace(a, b), "lower": str.lower, "upper": str.upper,
    "trimspace": str.strip, "trimprefix": lambda s, p: s[len(p):] if s.startswith(p) else s,
    "trimsuffix": lambda s, p: s[:-len(p)] if p and s.endswith(p) else s,
    "startswith": str.startswith, "endswith": str.endswith,
    "coalesce": lambda *v: next(x for x in v if x not in (None, "")),
    "compact": lambda l: [x for x in l if x not in (None, "")],
    "flatten": lambda l: [y for x in l for y in (x if isinstance(x, list) else [x])],
    "distinct": lambda l: list(dict.fromkeys(l)), "min": min, "max": max,
    "format": _format, "sensitive": lambda v: v, "nonsensitive": lambda v: v,
    "try": lambda *v: v[0], "can": lambda v: True, "abs": abs,
}
