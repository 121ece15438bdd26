"""Offline checks of the SQS permissions of push channels' queue consumers (issue 19): the task
role gets exactly what docs/publishing-queue.md lists, only on the queues the variables name,
and nothing at all by default."""
import re

from tfparse import INFRA, ROOT, blocks, one, variable

CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
DEAD_LETTER = {"sqs:SendMessage"}


def task_policy():
    (doc,) = [body for name, body in blocks("data", "aws_iam_policy_document") if name == "task"]
    return doc


def dynamic_statements():
    """The task policy's optional statements: {sid: (for_each, actions, resources)}."""
    out = {}
    for entry in task_policy().get("dynamic", []):
        statement = entry.get("statement")
        if statement is None:
            continue
        content = one(statement["content"])
        out[one(content["sid"])] = (
            one(statement["for_each"]),
            set(one(content["actions"])),
            one(content["resources"]),
        )
    return out


def test_queue_statements_grant_the_documented_actions_on_the_listed_queues_only():
    statements = dynamic_statements()
    assert statements["ConsumePushQueues"] == (
        "${length(var.sqs_queue_arns) > 0 ? [1] : []}", CONSUME, "${var.sqs_queue_arns}")
    assert statements["DeadLetterPushQueues"] == (
        "${length(var.sqs_dead_letter_queue_arns) > 0 ? [1] : []}", DEAD_LETTER,
        "${var.sqs_dead_letter_queue_arns}")
    for statement in task_policy().get("statement", []):
        actions = one(statement.get("actions", [[]]))
        assert not any(a.startswith("sqs:") for a in actions), "SQS only through the queue variables"


def test_no_queue_means_no_sqs_permission():
    for name in ["sqs_queue_arns", "sqs_dead_letter_queue_arns"]:
        body = variable(name)
        assert one(body["default"]) == [], name
        assert one(body["type"]) == "${list(string)}", name
        condition = one(one(body["validation"])["condition"]).replace(" ", "")
        assert 'startswith(arn,"arn:aws:sqs:")' in condition, condition


def test_the_docs_list_the_same_permissions():
    doc = (ROOT / "docs/publishing-queue.md").read_text()
    for action in CONSUME | DEAD_LETTER:
        assert action in doc, action
    assert "sqs_queue_arns" in doc and "sqs_dead_letter_queue_arns" in doc


def test_the_consumer_calls_only_what_the_role_allows():
    """Every SQS operation the Rust consumer makes is covered by the granted actions
    (DeleteMessageBatch is authorized as sqs:DeleteMessage)."""
    source = (ROOT / "backend/src/push/queue.rs").read_text()
    calls = set(re.findall(r"\.sqs\s*\.\s*(\w+)\(\)", source))
    assert calls, "the consumer's SQS calls"
    as_action = {"receive_message": "sqs:ReceiveMessage", "delete_message_batch": "sqs:DeleteMessage",
                 "delete_message": "sqs:DeleteMessage", "send_message": "sqs:SendMessage",
                 "get_queue_attributes": "sqs:GetQueueAttributes"}
    assert calls <= set(as_action), calls
    assert {as_action[c] for c in calls} <= CONSUME | DEAD_LETTER


def test_the_example_names_the_variables():
    example = (INFRA / "terraform.tfvars.example").read_text()
    for name in ["sqs_queue_arns", "sqs_dead_letter_queue_arns"]:
        assert re.search(rf"^{name}\s*=\s*\[\]", example, re.M), name
