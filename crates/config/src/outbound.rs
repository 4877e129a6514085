//! `outbound = ["https://api.example.com", …]`: the origins a tenant's guest may call.

use std::fmt;
use std::net::IpAddr;

/// One allowed origin: scheme, host and port, compared exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name, or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port, the scheme's default when the URL names none.
    pub port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` is allowed; a path is not).
    pub fn parse(text: &str) -> Result<Origin, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` is not an origin like \"https://api.example.com\""))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("`{text}`: the scheme must be http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{text}` must be only scheme, host and port, like \"https://api.example.com:8443\""
            ));
        }
        let uri: http::uri::Authority = authority.parse().map_err(|e| format!("`{text}`: {e}"))?;
        let host = uri.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{text}` names no host"));
        }
        // `Authority` reports an out-of-range port as no port at all.
        let names_port = authority
            .rsplit(']')
            .next()
            .is_some_and(|tail| tail.contains(':'));
        let port = match uri.port_u16() {
            Some(port) if port > 0 => port,
            None if !names_port => default_port,
            _ => return Err(format!("`{text}`: the port must be 1-65535")),
        };
        Ok(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The host as an IP address, when the origin names one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            Some(IpAddr::V6(ip)) => write!(f, "{}://[{ip}]:{}", self.scheme, self.port),
            _ => write!(f, "{}://{}:{}", self.scheme, self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports() {
        let o = Origin::parse("https://API.example.com/").unwrap();
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "api.example.com", 443)
        );
        let o = Origin::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 9000));
        assert!(o.ip().is_some());
        let o = Origin::parse("http://[::1]:8080").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 8080));
        assert_eq!(o.to_string(), "http://[::1]:8080");
    }

    #[test]
    fn bad_origins_say_why() {
        for (text, needle) in [
            ("api.example.com", "not an origin"),
            ("ftp://x", "http or https"),
            ("https://x/path", "only scheme, host and port"),
            ("https://user@x", "only scheme, host and port"),
            ("https://", "only scheme, host and port"),
            ("https://x:99999", "1-65535"),
        ] {
            let error = Origin::parse(text).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
