//! This ECS task's private IPv4 (`cluster.advertise_host = "ecs"`) from the task metadata
//! endpoint v4: `GET ${ECS_CONTAINER_METADATA_URI_V4}` answers the container's metadata, whose
//! `Networks[0].IPv4Addresses[0]` is the task's address in the VPC (`awsvpc` network mode,
//! which Fargate always uses).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;

/// The variable ECS sets in every container of a task.
pub const URI_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// Tries before giving up: the endpoint answers within milliseconds once the task runs, but
/// may refuse for a moment while the container starts.
const ATTEMPTS: u32 = 5;
const TIMEOUT: Duration = Duration::from_secs(2);
const PAUSE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EcsMetadataError {
    #[error("cluster.advertise_host = \"ecs\" needs ${URI_VAR}, which ECS sets in every task; it is not set (not on ECS? then set cluster.advertise_host to this host's address)")]
    NoUri,
    #[error("cluster.advertise_host = \"ecs\": no answer from the ECS task metadata endpoint {uri} after {ATTEMPTS} tries: {detail}")]
    Unreachable { uri: String, detail: String },
    #[error("cluster.advertise_host = \"ecs\": the ECS task metadata at {uri} holds no usable Networks[0].IPv4Addresses[0]: {detail}")]
    Unusable { uri: String, detail: String },
}

/// The part of the container metadata document read here.
#[derive(Deserialize)]
struct Container {
    #[serde(rename = "Networks")]
    networks: Vec<Network>,
}

#[derive(Deserialize)]
struct Network {
    #[serde(rename = "IPv4Addresses", default)]
    ipv4_addresses: Vec<String>,
}

/// `Networks[0].IPv4Addresses[0]` of a container metadata document.
pub fn parse_container(body: &[u8]) -> Result<Ipv4Addr, String> {
    let container: Container = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let first = container
        .networks
        .first()
        .ok_or("Networks is empty")?
        .ipv4_addresses
        .first()
        .ok_or("Networks[0].IPv4Addresses is empty")?;
    first
        .parse()
        .map_err(|_| format!("{first:?} is not an IPv4 address"))
}

/// The task's private IPv4 from the endpoint `uri` names (`None`: the variable is unset).
pub async fn private_ipv4(uri: Option<String>) -> Result<Ipv4Addr, EcsMetadataError> {
    let uri = uri
        .filter(|u| !u.is_empty())
        .ok_or(EcsMetadataError::NoUri)?;
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("reqwest client");
    let mut last = EcsMetadataError::NoUri;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(PAUSE).await;
        }
        last = match read(&client, &uri).await {
            Ok(body) => match parse_container(&body) {
                Ok(ip) => return Ok(ip),
                Err(detail) => EcsMetadataError::Unusable {
                    uri: uri.clone(),
                    detail,
                },
            },
            Err(detail) => EcsMetadataError::Unreachable {
                uri: uri.clone(),
                detail,
            },
        };
        tracing::debug!(attempt, error = %last, "ECS task metadata not read yet");
    }
    Err(last)
}

async fn read(client: &reqwest::Client, uri: &str) -> Result<Vec<u8>, String> {
    let response = client.get(uri).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The shape of AWS's example container metadata response (task metadata v4 examples,
    /// "Example container metadata response"), abridged to the fields around `Networks`.
    const AWS_SAMPLE: &str = r#"{
        "DockerId": "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66",
        "Name": "curl",
        "DockerName": "ecs-curltest-24-curl-cca48e8dcadd97805600",
        "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest",
        "Labels": {
            "com.amazonaws.ecs.cluster": "default",
            "com.amazonaws.ecs.container-name": "curl",
            "com.amazonaws.ecs.task-definition-family": "curltest"
        },
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": { "CPU": 10, "Memory": 128 },
        "Type": "NORMAL",
        "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9",
        "Networks": [
            {
                "NetworkMode": "awsvpc",
                "IPv4Addresses": ["10.0.2.100"],
                "AttachmentIndex": 0,
                "MACAddress": "0e:9e:32:c7:48:85",
                "IPv4SubnetCIDRBlock": "10.0.2.0/24",
                "PrivateDNSName": "ip-10-0-2-100.us-west-2.compute.internal",
                "SubnetGatewayIpv4Address": "10.0.2.1/24"
            }
        ]
    }"#;

    #[test]
    fn reads_the_first_address_of_the_first_network() {
        assert_eq!(
            parse_container(AWS_SAMPLE.as_bytes()),
            Ok(Ipv4Addr::new(10, 0, 2, 100))
        );
        for (body, problem) in [
            (r#"{"Networks": []}"#, "Networks is empty"),
            (
                r#"{"Networks": [{"NetworkMode": "awsvpc"}]}"#,
                "IPv4Addresses is empty",
            ),
            (
                r#"{"Networks": [{"IPv4Addresses": ["fd00::1"]}]}"#,
                "not an IPv4",
            ),
            (r#"{"Name": "curl"}"#, "Networks"),
        ] {
            let e = parse_container(body.as_bytes()).unwrap_err();
            assert!(e.contains(problem), "{body}: {e}");
        }
    }

    /// A local endpoint answering `answers` in turn (the last one for ever); its URL and how
    /// many requests it got.
    async fn endpoint(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v4/abc-123", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (status, body) = answers[n.min(answers.len() - 1)];
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            }
        });
        (url, served)
    }

    #[tokio::test]
    async fn asks_the_endpoint_and_retries_until_it_answers() {
        let (url, served) = endpoint(vec![(503, "starting"), (200, AWS_SAMPLE)]).await;
        let ip = private_ipv4(Some(url)).await.unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(served.load(Ordering::SeqCst), 2, "one retry");
    }

    #[tokio::test]
    async fn names_the_setting_when_the_variable_or_the_answer_is_unusable() {
        let e = private_ipv4(None).await.unwrap_err().to_string();
        assert!(
            e.contains("cluster.advertise_host") && e.contains(URI_VAR),
            "{e}"
        );
        let (url, served) = endpoint(vec![(200, r#"{"Networks": []}"#)]).await;
        let e = private_ipv4(Some(url)).await.unwrap_err().to_string();
        assert!(
            e.contains("cluster.advertise_host") && e.contains("Networks is empty"),
            "{e}"
        );
        assert_eq!(served.load(Ordering::SeqCst), ATTEMPTS as usize);
        let closed = format!("http://127.0.0.1:{}/v4", free_port());
        let e = private_ipv4(Some(closed)).await.unwrap_err();
        assert!(matches!(e, EcsMetadataError::Unreachable { .. }), "{e}");
    }

    /// A loopback port nobody listens on.
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
