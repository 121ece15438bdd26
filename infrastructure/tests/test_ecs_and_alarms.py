"""Offline checks of the ECS task and the alarms: the backends run in cluster mode with the
settings of docs/scaling.md, every secret comes from Secrets Manager (never the environment),
shutdown leaves time to release leases, and each alarm watches a metric the backend emits under
the namespace and Service the task gives it."""
import re

import pytest

from tfparse import (ROOT, blocks, container_definitions, environment, local, one, resource, variable,
                     variable_accepts)

# The CloudWatch embedded-metric names the backend writes (issue 18's contract, log.emf_*).
EMF_METRICS = {"ChannelsWithSubscribers", "ActivePollers", "Subscribers", "PublishFailures", "PollFailures",
               "LeasesLost", "LeasesAcquired", "FailingChannels"}
SECRETS = {"pushpin_sig_key", "cluster_secret"}


def test_the_backends_run_in_cluster_mode_and_advertise_their_task_address():
    env = environment(container_definitions()["backend"])
    expected = {
        "RESTREAM_SERVER__LISTEN": "0.0.0.0:5000",
        "RESTREAM_CLUSTER__ENABLED": "true",
        "RESTREAM_CLUSTER__ADVERTISE_HOST": "ecs",
        "RESTREAM_CLUSTER__PUSHPIN_PUBLISH_SPEC": "tcp://{host}:5560",
        "RESTREAM_CLUSTER__PUSHPIN_HTTP_URL": "http://{host}:5561",
        "RESTREAM_CLUSTER__PUSHPIN_STATS_SPEC": "tcp://{host}:5564",
        "RESTREAM_SERVER__METRICS_LISTEN": "0.0.0.0:9100",
        "RESTREAM_LOG__EMF_INTERVAL_SECS": "60",
        "RESTREAM_LOG__EMF_SERVICE": "${var.name}",
        "RESTREAM_LOG__EMF_NAMESPACE": "${var.metrics_namespace}",
        # Cluster mode needs the shared store (docs/scaling.md).
        "RESTREAM_STORE__KIND": "dynamodb",
        "RESTREAM_LOG__FORMAT": "json",
    }
    assert {k: env.get(k) for k in expected} == expected
    # Its own Pushpin stays on the defaults (127.0.0.1 in the task): no static list overrides them.
    assert not [k for k in env if k.startswith("RESTREAM_PUSHPIN__")]
    # The advertised address is learned, never a fixed URL that every task would share.
    assert "RESTREAM_CLUSTER__ADVERTISE_URL" not in env


def test_pushpin_serves_the_other_tasks_and_forwards_to_its_own_backend():
    pushpin = container_definitions()["pushpin"]
    env = environment(pushpin)
    assert env["RESTREAM_PUSHPIN_INTERNAL_ADDR"] == "0.0.0.0"
    assert env["RESTREAM_BACKEND"] == "127.0.0.1:5000"
    assert env["PUSHPIN_X_FORWARDED_FOR"] == "", "the ALB appends the client's address"
    assert pushpin["dependsOn"] == [{"containerName": "backend", "condition": "HEALTHY"}]


def test_secrets_come_from_secrets_manager_never_the_environment():
    arns = {f"${{aws_secretsmanager_secret.{name}.arn}}" for name in SECRETS}
    given = set()
    for name, container in container_definitions().items():
        for key, value in environment(container).items():
            assert not re.search(r"SECRET|SIG_KEY|PASSWORD|TOKEN|CREDENTIAL", key), f"{name}: {key} in clear"
            assert "random_password" not in str(value) and "secret_string" not in str(value), (name, key)
        for secret in container.get("secrets", []):
            assert secret["valueFrom"] in arns, (name, secret)
            given.add((name, secret["name"]))
    assert given == {("pushpin", "RESTREAM_SIG_KEY"), ("backend", "RESTREAM_PUSHPIN__SIG_KEY"),
                     ("backend", "RESTREAM_CLUSTER__SECRET")}
    for name in SECRETS:
        password = resource("random_password", name)
        assert one(password["length"]) >= 32 and one(password["special"]) is False, name
        version = resource("aws_secretsmanager_secret_version", name)
        assert one(version["secret_string"]) == f"${{random_password.{name}.result}}"
    # The execution role (ECS, at task start) may read exactly these; the task role none.
    (_, doc), = [(n, d) for n, d in blocks("data", "aws_iam_policy_document") if n == "execution_secrets"]
    (statement,) = doc["statement"]
    assert one(statement["actions"]) == ["secretsmanager:GetSecretValue"]
    assert set(one(statement["resources"])) == arns
    (_, task_doc), = [(n, d) for n, d in blocks("data", "aws_iam_policy_document") if n == "task"]
    assert "secretsmanager" not in str(task_doc)
    service = resource("aws_ecs_service", "restream")
    for name in SECRETS:
        assert f"${{aws_secretsmanager_secret_version.{name}}}" in one(service["depends_on"]), name


def test_stopping_a_task_leaves_time_to_release_its_leases():
    containers = container_definitions()
    for name, container in containers.items():
        # Above a lease TTL (10 s) plus the HTTP drain; Fargate's maximum is 120.
        assert 20 <= container["stopTimeout"] <= 120, name
    backend = containers["backend"]
    assert backend["healthCheck"]["command"] == ["CMD", "restream", "health"]
    assert backend["readonlyRootFilesystem"] is True


def test_two_tasks_by_default_and_never_none():
    assert one(variable("desired_count")["default"]) == 2
    assert one(resource("aws_ecs_service", "restream")["desired_count"]) == "${var.desired_count}"
    assert [variable_accepts("desired_count", n) for n in [0, 1, 2, 5, 1.5, -1]] == [
        False, True, True, True, False, False]
    # A rolling deployment starts the new tasks before stopping the old ones.
    service = resource("aws_ecs_service", "restream")
    assert one(service["deployment_minimum_healthy_percent"]) == 100
    assert one(service["deployment_maximum_percent"]) == 200


def alarms():
    return dict(blocks("resource", "aws_cloudwatch_metric_alarm"))


def alarm_metrics(alarm):
    """(namespace, metric name, dimensions, statistic) of each metric an alarm reads."""
    if "metric_query" in alarm:
        out = []
        for query in alarm["metric_query"]:
            for metric in query.get("metric", []):
                out.append((one(metric["namespace"]), one(metric["metric_name"]), one(metric["dimensions"]),
                            one(metric["stat"])))
        return out
    return [(one(alarm["namespace"]), one(alarm["metric_name"]), one(alarm["dimensions"]), one(alarm["statistic"]))]


def test_alarms_watch_what_the_backend_emits_under_its_namespace_and_service():
    env = environment(container_definitions()["backend"])
    assert local("emf_dimensions") == {"Service": env["RESTREAM_LOG__EMF_SERVICE"]}
    watched = set()
    for name, alarm in alarms().items():
        for namespace, metric, dimensions, stat in alarm_metrics(alarm):
            if namespace == "AWS/ApplicationELB":
                assert dimensions == "${local.alb_dimensions}", name
                continue
            assert namespace == env["RESTREAM_LOG__EMF_NAMESPACE"] == "${var.metrics_namespace}", name
            assert dimensions == "${local.emf_dimensions}", name
            assert metric in EMF_METRICS, f"{name}: {metric} is not a metric the backend emits"
            watched.add((metric, stat))
    # Users are hurt when: nobody polls channels that have subscribers, publishes fail, channels
    # keep failing, leases churn.
    assert {("ChannelsWithSubscribers", "Maximum"), ("ActivePollers", "Sum"), ("PublishFailures", "Sum"),
            ("FailingChannels", "Maximum"), ("LeasesLost", "Sum")} <= watched
    stalled = alarms()["no_active_pollers"]
    (expression,) = [one(q["expression"]) for q in stalled["metric_query"] if "expression" in q]
    assert expression == "IF(subscribed > 0 AND pollers == 0, 1, 0)"
    assert one(stalled["treat_missing_data"]) == "breaching", "no metric line at all means no poller either"


def test_every_alarm_notifies_the_optional_topic_and_is_documented():
    assert one(variable("alarm_sns_topic_arn")["default"]) == ""
    actions = local("alarm_actions")
    assert actions.startswith('${var.alarm_sns_topic_arn == "" ? [] : [') and "var.alarm_sns_topic_arn" in actions[40:]
    runbook = (ROOT / "docs/deploy.md").read_text()
    watch = runbook[runbook.index("## What to watch"):]
    assert len(alarms()) >= 6
    for name, alarm in alarms().items():
        assert one(alarm["alarm_actions"]) == one(alarm["ok_actions"]) == "${local.alarm_actions}", name
        suffix = one(alarm["alarm_name"]).removeprefix("${var.name}-")
        assert f"`{suffix}`" in watch, f"docs/deploy.md 'What to watch' does not explain {suffix}"


def emf_writer_source():
    """The backend's Rust source if it has an embedded-metric-format writer yet (issue 18)."""
    text = "\n".join(p.read_text() for p in (ROOT / "backend/src").rglob("*.rs"))
    return text if "CloudWatchMetrics" in text else None


@pytest.mark.skipif(emf_writer_source() is None, reason="backend/src has no EMF writer yet (issue 18, helper ops)")
def test_the_backend_source_emits_every_alarmed_metric():
    source = emf_writer_source()
    for name, alarm in alarms().items():
        for namespace, metric, _, _ in alarm_metrics(alarm):
            if namespace != "AWS/ApplicationELB":
                assert f'"{metric}"' in source, f"{name}: backend/src never names {metric}"
