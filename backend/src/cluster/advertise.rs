//! This replica as the others see it: its advertise host (`cluster.advertise_host`: the host
//! of `server.listen`, a configured one, or this ECS task's private IPv4), the URL they hand
//! snapshot requests to, and its own Pushpin's endpoints with `{host}` filled in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::ecs_metadata::{self, EcsMetadataError};
use super::{AdvertisedPushpin, Member};
use crate::config::{render, url_host, AdvertiseHost, ClusterSettings, PushpinTemplates};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdvertiseError {
    #[error(transparent)]
    Ecs(#[from] EcsMetadataError),
}

/// The host other replicas reach this one at. An empty setting takes the host of `listen`;
/// a wildcard there becomes loopback, which only replicas on this machine reach (warned).
pub async fn advertise_host(
    setting: &AdvertiseHost,
    listen: SocketAddr,
) -> Result<String, AdvertiseError> {
    Ok(match setting {
        AdvertiseHost::Host(h) => h.clone(),
        AdvertiseHost::Ecs => {
            let uri = std::env::var(ecs_metadata::URI_VAR).ok();
            let ip = ecs_metadata::private_ipv4(uri).await?;
            tracing::info!(%ip, "advertise host from the ECS task metadata");
            ip.to_string()
        }
        AdvertiseHost::Listen => match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
            IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
            ip => ip.to_string(),
        },
    })
}

/// This replica's membership record: `id`, its `advertise_url` (default
/// `http://<advertise host>:<listen port>`) and its advertised Pushpin.
pub async fn me(
    id: String,
    c: &ClusterSettings,
    listen: SocketAddr,
) -> Result<Member, AdvertiseError> {
    let host = advertise_host(&c.advertise_host, listen).await?;
    let url = match &c.advertise_url {
        Some(url) => url.clone(),
        None => format!("http://{}:{}", url_host(&host), listen.port()),
    };
    let pushpin = advertised(&c.pushpin, &host);
    let uses_host = c.advertise_url.is_none() || pushpin != Default::default();
    if c.advertise_host == AdvertiseHost::Listen && listen.ip().is_unspecified() && uses_host {
        tracing::warn!(
            listen = %listen,
            advertised = %host,
            "server.listen is a wildcard and cluster.advertise_host is empty: other replicas \
             are told {host}, which only this machine reaches; set cluster.advertise_host \
             (`ecs` on ECS) or cluster.advertise_url"
        );
    }
    Ok(Member { id, url, pushpin })
}

/// This replica's Pushpin templates with `{host}` filled in.
fn advertised(templates: &PushpinTemplates, host: &str) -> AdvertisedPushpin {
    let r = |t: &Option<String>| t.as_deref().map(|t| render(t, host));
    AdvertisedPushpin {
        publish_spec: r(&templates.publish_spec),
        http_url: r(&templates.http_url),
        stats_spec: r(&templates.stats_spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PushpinTemplates, Secret};
    use std::time::Duration;

    #[test]
    fn templates_are_rendered_with_the_host() {
        let t = PushpinTemplates::parse(
            "tcp://{host}:5560".into(),
            "http://{host}:5561/".into(),
            "tcp://{host}:5564".into(),
        )
        .unwrap();
        assert_eq!(
            advertised(&t, "10.0.1.7"),
            AdvertisedPushpin {
                publish_spec: Some("tcp://10.0.1.7:5560".into()),
                http_url: Some("http://10.0.1.7:5561/".into()),
                stats_spec: Some("tcp://10.0.1.7:5564".into()),
            }
        );
        assert_eq!(
            advertised(&t, "fd00::7").publish_spec.as_deref(),
            Some("tcp://[fd00::7]:5560")
        );
        assert_eq!(
            advertised(&PushpinTemplates::default(), "h"),
            AdvertisedPushpin::default()
        );
    }

    fn settings(host: AdvertiseHost, url: Option<&str>) -> ClusterSettings {
        ClusterSettings {
            replica_id: None,
            advertise_url: url.map(String::from),
            lease_ttl: Duration::from_secs(10),
            secret: Secret::new("a-cluster-secret-of-some-length"),
            advertise_host: host,
            pushpin: PushpinTemplates::parse(
                "tcp://{host}:5560".into(),
                "http://{host}:5561".into(),
                "tcp://{host}:5564".into(),
            )
            .unwrap(),
        }
    }

    #[tokio::test]
    async fn the_host_fills_the_default_url_and_the_templates() {
        let listen: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let m = me(
            "r1".into(),
            &settings(AdvertiseHost::Host("10.0.1.7".into()), None),
            listen,
        )
        .await
        .unwrap();
        assert_eq!(m.url, "http://10.0.1.7:5000");
        assert_eq!(
            m.pushpin.publish_spec.as_deref(),
            Some("tcp://10.0.1.7:5560")
        );
        assert_eq!(m.pushpin.http_url.as_deref(), Some("http://10.0.1.7:5561"));
        assert_eq!(m.pushpin.stats_spec.as_deref(), Some("tcp://10.0.1.7:5564"));

        // Empty: the listen host; a wildcard is loopback, as `advertise_url` always was.
        let m = me("r1".into(), &settings(AdvertiseHost::Listen, None), listen)
            .await
            .unwrap();
        assert_eq!(m.url, "http://127.0.0.1:5000");
        let v6: SocketAddr = "[::]:5000".parse().unwrap();
        let m = me("r1".into(), &settings(AdvertiseHost::Listen, None), v6)
            .await
            .unwrap();
        assert_eq!(m.url, "http://[::1]:5000");
        assert_eq!(m.pushpin.stats_spec.as_deref(), Some("tcp://[::1]:5564"));
        let own: SocketAddr = "10.0.0.9:5001".parse().unwrap();
        let c = settings(AdvertiseHost::Listen, Some("http://lb.internal:80"));
        let m = me("r1".into(), &c, own).await.unwrap();
        assert_eq!(m.url, "http://lb.internal:80", "a set advertise_url wins");
        assert_eq!(
            m.pushpin.publish_spec.as_deref(),
            Some("tcp://10.0.0.9:5560")
        );
    }
}
