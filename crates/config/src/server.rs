//! `[server]`: the public listener, trusted proxies and the geo table (TLS, the admin
//! API and connection limits are in `operations.rs`).

use std::net::SocketAddr;

use toml::Spanned;

use crate::{AdminConfig, ConnectionLimits, TlsListener, Validator, raw};

/// Address the public listener binds when `[server] listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `[server]`: the public listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the plain HTTP listener (HTTP/1.1 and cleartext HTTP/2).
    pub listen: SocketAddr,
    /// Peers whose `x-forwarded-for` is believed (load balancers in front of the node).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Client networks and their ISO country codes (`geo`), for `x-outpost-country`.
    pub geo: Vec<(ipnet::IpNet, String)>,
    /// The HTTPS listener, if any.
    pub tls: Option<TlsListener>,
    /// The admin API, if any.
    pub admin: Option<AdminConfig>,
    /// Limits on client connections, on both listeners.
    pub connections: ConnectionLimits,
}

impl Validator<'_> {
    pub(crate) fn server(&mut self, raw: Option<Spanned<raw::RawServer>>) -> ServerConfig {
        let default = DEFAULT_LISTEN
            .parse()
            .expect("DEFAULT_LISTEN is a socket address");
        let mut server = ServerConfig {
            listen: default,
            trusted_proxies: Vec::new(),
            geo: Vec::new(),
            tls: None,
            admin: None,
            connections: ConnectionLimits::default(),
        };
        let Some(mut raw) = raw.map(Spanned::into_inner) else {
            return server;
        };
        server.connections = self.connection_limits(&mut raw);
        server.tls = raw.tls.take().and_then(|tls| self.tls_listener(tls));
        server.admin = raw.admin.take().and_then(|admin| self.admin(admin));
        for proxy in raw.trusted_proxies.unwrap_or_default() {
            let text = proxy.get_ref();
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => server.trusted_proxies.push(net),
                Err(_) => {
                    let error = self.error(&proxy, "server.trusted_proxies", format!(
                        "`{text}` is not an address or network; write it like \"10.0.0.1\" or \"10.0.0.0/8\""
                    ));
                    self.errors.push(error);
                }
            }
        }
        for (network, country) in raw.geo.unwrap_or_default() {
            let net = network
                .parse::<ipnet::IpNet>()
                .or_else(|_| network.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            let code = country.get_ref();
            match net {
                Err(_) => {
                    let error = self.error(&country, "server.geo", format!(
                        "`{network}` is not an address or network; write it like \"203.0.113.0/24\""
                    ));
                    self.errors.push(error);
                }
                Ok(_) if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) => {
                    let error = self.error(
                        &country,
                        "server.geo",
                        format!("`{code}` is not a two-letter ISO country code like \"DE\""),
                    );
                    self.errors.push(error);
                }
                Ok(net) => server.geo.push((net, code.clone())),
            }
        }
        // The most specific network wins.
        server
            .geo
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        if let Some(listen) = raw.listen {
            match listen.get_ref().parse() {
                Ok(addr) => server.listen = addr,
                Err(_) => {
                    let error = self.error(&listen, "server.listen", format!(
                        "`{}` is not a socket address; write it like \"0.0.0.0:8080\" or \"[::]:8080\"",
                        listen.get_ref()
                    ));
                    self.errors.push(error);
                }
            }
        }
        server
    }
}
