"""Every channel file in channels/ validates against schemas/channel.schema.json, and the
schema refuses what the backend refuses (an unknown field, a bad pagination, a body on GET).
`restream fetchers check` (backend/tests/declarative/check.rs) checks the rest."""

import json
import pathlib
import tomllib

import jsonschema
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas/channel.schema.json").read_text())
FILES = sorted((ROOT / "channels").glob("*.toml"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_the_schema_is_valid():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_shipped_channel_files_validate(path):
    doc = tomllib.loads(path.read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
    assert not errors, f"{path.name}: {errors}"


BASE = {"name": "t", "url": "https://x.invalid/a"}


@pytest.mark.parametrize(
    "doc",
    [
        {**BASE, "bogus": 1},
        {**BASE, "kind": "sideways"},
        {**BASE, "pagination": {"type": "cursor", "field": "no-slash", "param": "c"}},
        {**BASE, "pagination": {"type": "link", "param": "p"}},
        {**BASE, "body": {"q": "x"}},
        {**BASE, "items": "list"},
        {**BASE, "keys": {"k": {"in": "header"}}},
        {**BASE, "params": {"limit": {}}},
        {"kind": "push", "name": "p", "url": "https://x.invalid"},
    ],
)
def test_the_schema_refuses_what_the_backend_refuses(doc):
    assert list(VALIDATOR.iter_errors(doc)), doc
