//! EMF lines checked against the rules of the specification (CloudWatch "Specification:
//! Embedded metric format"), and the counters read without counting anything twice.

use super::*;

/// The units a `MetricDefinition` may name (CloudWatch `MetricDatum.Unit`).
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

fn only_members(object: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{what} has a member the specification does not define: {k}"
        )),
        None => Ok(()),
    }
}

fn string_of(v: &Value, max: usize, what: &str) -> Result<String, String> {
    match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= max => Ok(s.to_string()),
        _ => Err(format!(
            "{what} must be a string of 1 to {max} characters: {v}"
        )),
    }
}

/// Every rule of the specification a log line of ours can break, as an error naming it.
fn check(line: &str) -> Result<(), String> {
    if line.contains('\n') || line.len() > 256 * 1024 {
        return Err("a log event is one line of at most 256 KB".into());
    }
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let root = root.as_object().ok_or("the root node is an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("_aws (the metadata object) is required")?;
    only_members(aws, &["Timestamp", "CloudWatchMetrics"], "_aws")?;
    let ts = aws
        .get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("_aws.Timestamp is a number of milliseconds since the epoch")?;
    let now = now_ms();
    if ts + 14 * 24 * 3600 * 1000 < now || ts > now + 2 * 3600 * 1000 {
        return Err(format!(
            "Timestamp {ts} is outside [now - 2 weeks, now + 2 h]"
        ));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics is an array")?;
    if directives.is_empty() {
        return Err("no MetricDirective".into());
    }
    for d in directives {
        let d = d.as_object().ok_or("a MetricDirective is an object")?;
        only_members(
            d,
            &["Namespace", "Dimensions", "Metrics"],
            "MetricDirective",
        )?;
        string_of(d.get("Namespace").unwrap_or(&Value::Null), 255, "Namespace")?;
        let dimension_sets = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("Dimensions is an array of DimensionSets")?;
        let mut dimensions = Vec::new();
        for set in dimension_sets {
            let set = set.as_array().ok_or("a DimensionSet is an array")?;
            if set.len() > 30 {
                return Err("a DimensionSet holds at most 30 dimensions".into());
            }
            for key in set {
                let key = string_of(key, 255, "a dimension key")?;
                let value = root
                    .get(&key)
                    .ok_or(format!("dimension {key} has no target member"))?;
                let value = string_of(value, 1024, "a dimension value")?;
                if !value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
                    return Err(format!("dimension value {value:?} is not printable ASCII"));
                }
                dimensions.push(key);
            }
        }
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("Metrics is an array of MetricDefinitions")?;
        if metrics.len() > 100 {
            return Err("at most 100 MetricDefinitions".into());
        }
        for m in metrics {
            let m = m.as_object().ok_or("a MetricDefinition is an object")?;
            only_members(
                m,
                &["Name", "Unit", "StorageResolution"],
                "MetricDefinition",
            )?;
            let name = string_of(m.get("Name").unwrap_or(&Value::Null), 255, "Name")?;
            if let Some(unit) = m.get("Unit") {
                if !unit.as_str().is_some_and(|u| UNITS.contains(&u)) {
                    return Err(format!("{name}: Unit {unit} is not a CloudWatch unit"));
                }
            }
            if let Some(r) = m.get("StorageResolution") {
                if r != 1 && r != 60 {
                    return Err(format!("{name}: StorageResolution is 1 or 60"));
                }
            }
            if dimensions.contains(&name) {
                return Err(format!("{name} is both a metric and a dimension"));
            }
            match root.get(&name) {
                Some(v) if v.is_number() => {}
                Some(Value::Array(vs)) if vs.len() <= 100 && vs.iter().all(Value::is_number) => {}
                other => {
                    return Err(format!(
                        "metric {name}: target member {other:?} is not numeric"
                    ))
                }
            }
        }
    }
    Ok(())
}

fn emf() -> Emf {
    Emf {
        interval: Duration::from_secs(60),
        namespace: "restream".into(),
        service: "restream-prod".into(),
    }
}

fn line(gauges: &Gauges, increases: &Counts) -> String {
    document(&emf(), now_ms(), gauges, increases).to_string()
}

#[test]
fn a_line_follows_the_specification_and_carries_each_value() {
    let gauges = Gauges {
        channels_with_subscribers: 5,
        active_pollers: 3,
        subscribers: 120,
        failing_channels: 1,
    };
    let increases = Counts {
        publish_failures: 2,
        poll_failures: 7,
        leases_lost: 1,
        leases_acquired: 4,
    };
    let text = line(&gauges, &increases);
    check(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let directive = &v["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "restream");
    assert_eq!(directive["Dimensions"], json!([["Service"]]));
    assert_eq!(v["Service"], "restream-prod");
    let names: Vec<&str> = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, METRIC_NAMES);
    for (name, want) in [
        ("ChannelsWithSubscribers", 5),
        ("ActivePollers", 3),
        ("Subscribers", 120),
        ("FailingChannels", 1),
        ("PublishFailures", 2),
        ("PollFailures", 7),
        ("LeasesLost", 1),
        ("LeasesAcquired", 4),
    ] {
        assert_eq!(v[name], want, "{name}");
    }
}

#[test]
fn the_checker_catches_what_cloudwatch_would_refuse() {
    let good: Value = serde_json::from_str(&line(&Gauges::default(), &Counts::default())).unwrap();
    let broken = |change: fn(&mut Value)| {
        let mut v = good.clone();
        change(&mut v);
        check(&v.to_string())
    };
    assert!(check(&good.to_string()).is_ok());
    assert!(
        broken(|v| v["Subscribers"] = json!("12")).is_err(),
        "a string value"
    );
    assert!(
        broken(|v| v["Service"] = json!(3)).is_err(),
        "a numeric dimension"
    );
    assert!(broken(|v| {
        v.as_object_mut().unwrap().remove("Service");
    })
    .is_err());
    assert!(broken(|v| v["_aws"]["Timestamp"] = json!("now")).is_err());
    assert!(
        broken(|v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Things"))
            .is_err()
    );
    assert!(broken(|v| v["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("")).is_err());
    assert!(broken(|v| v["_aws"]["CloudWatchMetrics"][0]["Extra"] = json!(1)).is_err());
}

#[test]
fn counters_are_read_by_label_and_reported_once() {
    let m = Metrics::new();
    let none = Counts::read(&m);
    assert_eq!(none, Counts::default());
    m.lease_events.with_label_values(&["lost"]).inc_by(2);
    m.lease_events.with_label_values(&["acquired"]).inc_by(3);
    m.lease_events.with_label_values(&["released"]).inc_by(5);
    m.poll_failures
        .with_label_values(&["a", "upstream_error"])
        .inc();
    m.poll_failures
        .with_label_values(&["b", "timeout"])
        .inc_by(2);
    m.publish_failures.inc();
    let first = Counts::read(&m);
    assert_eq!(
        first,
        Counts {
            publish_failures: 1,
            poll_failures: 3,
            leases_lost: 2,
            leases_acquired: 3,
        }
    );
    m.poll_failures
        .with_label_values(&["a", "upstream_error"])
        .inc();
    let second = Counts::read(&m);
    assert_eq!(
        second.since(&first),
        Counts {
            poll_failures: 1,
            ..Counts::default()
        },
        "only what happened since the previous line"
    );
    assert_eq!(first.since(&second), Counts::default(), "never negative");
}
