//! What every request carries into its guest about where it came from: the client's
//! address (`x-forwarded-for`, `x-outpost-client-ip`), the node (`x-outpost-node`), and a
//! W3C `traceparent`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

pub const FORWARDED_FOR: &str = "x-forwarded-for";
pub const CLIENT_IP: &str = "x-outpost-client-ip";
pub const NODE: &str = "x-outpost-node";
pub const TRACEPARENT: &str = "traceparent";
pub const COUNTRY: &str = "x-outpost-country";

/// Where requests come from, as the node's config describes it.
#[derive(Default)]
pub struct Network {
    /// Peers whose `x-forwarded-for` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Client networks → country code, most specific first.
    pub geo: Vec<(IpNet, String)>,
}

/// Rewrites `headers` for the guest. `peer` is the TCP peer. An incoming
/// `x-forwarded-for` is believed only when the peer is a trusted proxy; then the client is
/// the rightmost address in it that is not itself a trusted proxy. Returns the client.
pub fn apply(headers: &mut HeaderMap, peer: IpAddr, network: &Network, node_id: &str) -> IpAddr {
    let trusted = network.trusted_proxies.as_slice();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let incoming: Vec<String> = if is_trusted(&peer) {
        headers
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|part| part.trim().to_string())
            .filter(|part| !part.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let client = incoming
        .iter()
        .rev()
        .map_while(|hop| hop.parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer);
    let mut chain = incoming;
    chain.push(peer.to_string());
    headers.remove(FORWARDED_FOR);
    insert(headers, FORWARDED_FOR, &chain.join(", "));
    insert(headers, CLIENT_IP, &client.to_string());
    insert(headers, NODE, node_id);
    // Only the node says where a client is: a client's own claim is dropped.
    headers.remove(COUNTRY);
    if let Some((_, country)) = network.geo.iter().find(|(net, _)| net.contains(&client)) {
        insert(headers, COUNTRY, country);
    }
    let traceparent = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_traceparent(v))
        .map_or_else(new_traceparent, str::to_string);
    insert(headers, TRACEPARENT, &traceparent);
    client
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not all zero. Later
/// versions may append fields, which the spec says to accept.
fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let [version, trace, parent, flags, rest @ ..] = parts.as_slice() else {
        return false;
    };
    hex(version, 2)
        && *version != "ff"
        && (*version != "00" || rest.is_empty())
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
}

fn new_traceparent() -> String {
    let trace = rand::random::<u128>().max(1);
    let parent = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{parent:016x}-00")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(peer: &str, trusted: &[&str], sent: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in sent {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        let network = Network {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            geo: vec![
                ("198.51.100.0/25".parse().unwrap(), "NL".into()),
                ("198.51.100.0/24".parse().unwrap(), "DE".into()),
            ],
        };
        apply(&mut headers, peer.parse().unwrap(), &network, "edge-1");
        headers
    }

    fn get<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers.get(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn an_untrusted_peers_forwarded_for_is_replaced() {
        let h = run("203.0.113.9", &[], &[(FORWARDED_FOR, "1.2.3.4")]);
        assert_eq!(get(&h, FORWARDED_FOR), "203.0.113.9");
        assert_eq!(get(&h, CLIENT_IP), "203.0.113.9");
        assert_eq!(get(&h, NODE), "edge-1");
    }

    #[test]
    fn a_trusted_proxys_chain_is_appended_and_the_client_found() {
        let h = run(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[(FORWARDED_FOR, "198.51.100.7, 10.0.0.9")],
        );
        assert_eq!(get(&h, FORWARDED_FOR), "198.51.100.7, 10.0.0.9, 10.0.0.2");
        assert_eq!(get(&h, CLIENT_IP), "198.51.100.7");
        // A client cannot spoof past the first untrusted hop.
        let h = run(
            "10.0.0.2",
            &["10.0.0.0/8"],
            &[(FORWARDED_FOR, "6.6.6.6, 198.51.100.7")],
        );
        assert_eq!(get(&h, CLIENT_IP), "198.51.100.7");
    }

    #[test]
    fn the_country_comes_from_the_most_specific_network_never_the_client() {
        let h = run("198.51.100.7", &[], &[(COUNTRY, "US")]);
        assert_eq!(get(&h, COUNTRY), "NL");
        let h = run("198.51.100.200", &[], &[]);
        assert_eq!(get(&h, COUNTRY), "DE");
        let h = run("203.0.113.1", &[], &[(COUNTRY, "US")]);
        assert!(h.get(COUNTRY).is_none(), "unknown networks get no country");
    }

    #[test]
    fn traceparent_is_kept_when_valid_and_minted_otherwise() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            get(&run("1.1.1.1", &[], &[(TRACEPARENT, valid)]), TRACEPARENT),
            valid
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let minted = run("1.1.1.1", &[], &[(TRACEPARENT, bad)]);
            let minted = get(&minted, TRACEPARENT);
            assert_ne!(minted, bad);
            assert!(is_valid_traceparent(minted), "{minted}");
        }
        assert!(is_valid_traceparent(get(
            &run("1.1.1.1", &[], &[]),
            TRACEPARENT
        )));
    }
}
