"""Offline checks of the archive bucket's permissions (issue 20): the task role may put, get
and list objects in the bucket `archive_bucket` names, only there, and nothing by default; the
backend is told the bucket and keeps no local archive on its read-only filesystem."""
import re

from tfparse import INFRA, ROOT, blocks, container_definitions, environment, one, variable

OBJECTS = {"s3:PutObject", "s3:GetObject"}
LISTING = {"s3:ListBucket"}


def task_policy():
    (doc,) = [body for name, body in blocks("data", "aws_iam_policy_document") if name == "task"]
    return doc


def dynamic_statements():
    out = {}
    for entry in task_policy().get("dynamic", []):
        statement = entry.get("statement")
        if statement is None:
            continue
        content = one(statement["content"])
        out[one(content["sid"])] = (
            one(statement["for_each"]), set(one(content["actions"])), one(content["resources"]))
    return out


def test_archive_statements_grant_objects_and_listing_of_the_named_bucket_only():
    statements = dynamic_statements()
    when = '${var.archive_bucket != "" ? [1] : []}'
    assert statements["ArchiveObjects"] == (when, OBJECTS, ["arn:aws:s3:::${var.archive_bucket}/*"])
    assert statements["ArchiveListing"] == (when, LISTING, ["arn:aws:s3:::${var.archive_bucket}"])
    for statement in task_policy().get("statement", []):
        actions = set(one(statement.get("actions", [[]])))
        assert not actions & (LISTING | {"s3:PutObject"}), "archive writes only through archive_bucket"


def test_no_bucket_means_no_archive_permission():
    body = variable("archive_bucket")
    assert one(body["default"]) == ""
    assert one(body["type"]) == "${string}"
    condition = one(one(body["validation"])["condition"])
    assert 'var.archive_bucket == ""' in condition and "regex(" in condition, condition


def test_the_backend_archives_to_the_bucket_and_not_to_its_disk():
    env = environment(container_definitions()["backend"])
    assert env["RESTREAM_ARCHIVE__S3_BUCKET"] == "${var.archive_bucket}"
    assert env["RESTREAM_ARCHIVE__LOCAL_DIR"] == ""


def test_the_sink_calls_only_what_the_role_allows():
    source = (ROOT / "backend/src/archive/s3.rs").read_text()
    calls = set(re.findall(r"\.client\s*\.\s*(\w+)\(\)", source))
    as_action = {"put_object": "s3:PutObject", "get_object": "s3:GetObject",
                 "list_objects_v2": "s3:ListBucket"}
    assert calls == set(as_action), calls
    assert {as_action[c] for c in calls} == OBJECTS | LISTING


def test_the_example_and_the_docs_name_the_variable():
    example = (INFRA / "terraform.tfvars.example").read_text()
    assert re.search(r'^archive_bucket\s*=\s*""', example, re.M)
    assert "archive_bucket" in (ROOT / "docs/history.md").read_text()
