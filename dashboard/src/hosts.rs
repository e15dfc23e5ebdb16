//! Which names requests may call the dashboard by: the defence against DNS rebinding.
//!
//! A page on `evil.example` can make its name resolve to 127.0.0.1 after it has loaded; the
//! browser then treats the dashboard as same-origin with the attacker's page, which can read
//! every page and post to the API (measured: `POST /api/invoices` with `Host: evil.example`
//! answered 202). Neither the CSRF token nor the JSON-only API helps, since the attacker's
//! script reads the page like the dashboard's own would. What the browser cannot hide is the
//! name: it sends `Host: evil.example` (and `Origin: http://evil.example`). So every request
//! must name the address the dashboard listens on (its IP and port; on a loopback or wildcard
//! address also `localhost`, `127.0.0.1` and `[::1]` with that port), or a name listed in
//! `[dashboard] allowed_hosts`. A wrong `Host` gets 421 Misdirected Request, a wrong `Origin`
//! 403. `/healthz` and `/readyz` are exempt, as they are from authentication: orchestrators
//! probe them under whatever address they reach (a pod IP, a container name).

use crate::error::AppError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// Answered under any name: probes do not know the names a browser uses.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];
/// How much of a refused name is quoted back and logged.
const QUOTED_CHARS: usize = 100;

/// One `allowed_hosts` entry: a name, and the port it must come with, if one was given.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Allowed {
    name: String,
    port: Option<u16>,
}

/// `[dashboard] allowed_hosts`: comma-separated names such as `dashboard`,
/// `dash.example.com` or `localhost:8080`. A name without a port is allowed with any port (a
/// reverse proxy's public name usually comes without one); with a port, only with that one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostList(Vec<Allowed>);

impl FromStr for HostList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (name, port) = split_authority(entry)
                    .filter(|(name, _)| is_host_name(name))
                    .ok_or_else(|| {
                        format!(
                            "`{entry}` is not a host name with an optional port (such as \
                             dash.example.com or localhost:8080)"
                        )
                    })?;
                Ok(Allowed { name, port })
            })
            .collect::<Result<_, _>>()
            .map(HostList)
    }
}

/// Splits `name[:port]` (`[v6]` or `[v6]:port` for IPv6) into a lowercased name without a
/// trailing dot and the port; `None` when malformed.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{address}]"), port)
    } else {
        match authority.split_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(port) if !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()) => {
            Some(port.parse().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
    (!name.is_empty()).then_some((name, port))
}

/// Letters, digits, `-`, `.`, `_`, or a bracketed IPv6 address.
fn is_host_name(name: &str) -> bool {
    if let Some(address) = name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return address.parse::<std::net::Ipv6Addr>().is_ok();
    }
    name.bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'))
}

/// The names this dashboard answers to, made once from where it listens and the setting.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// The listen port: the port the names of the listen address must come with.
    port: u16,
    /// The listen address's own names, valid with `port` only.
    own: Vec<String>,
    configured: Vec<Allowed>,
}

impl AllowedHosts {
    pub fn new(listen: SocketAddr, configured: &HostList) -> Self {
        let ip = listen.ip();
        let mut own = Vec::new();
        if !ip.is_unspecified() {
            own.push(literal(ip));
        }
        // A wildcard listener is reachable on loopback too (a published container port is).
        if crate::security::is_loopback(ip) || ip.is_unspecified() {
            own.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
        }
        AllowedHosts {
            port: listen.port(),
            own,
            configured: configured.0.clone(),
        }
    }

    /// Whether `authority` (`name[:port]`) names this dashboard; `default_port` is the port an
    /// authority without one means (80 for `http`).
    pub fn allows(&self, authority: &str, default_port: u16) -> bool {
        let Some((name, port)) = split_authority(authority.trim()) else {
            return false;
        };
        let port = port.unwrap_or(default_port);
        (port == self.port && self.own.contains(&name))
            || self
                .configured
                .iter()
                .any(|allowed| allowed.name == name && allowed.port.is_none_or(|only| only == port))
    }

    /// Whether an `Origin` header's value (`scheme://name[:port]`) is this dashboard.
    pub fn allows_origin(&self, origin: &str) -> bool {
        let Some((scheme, authority)) = origin.trim().split_once("://") else {
            return false;
        };
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        !authority.contains('/') && self.allows(authority, default_port)
    }

    /// Checks a request's `Host` (or the authority of an absolute-form target) and `Origin`.
    fn check(&self, request: &Request) -> Result<(), AppError> {
        let host = request
            .uri()
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .or_else(|| {
                let value = request.headers().get(header::HOST)?;
                Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
            });
        match host {
            None => {
                return Err(AppError::Misdirected(
                    "The request has no Host header; the dashboard needs one to tell that it is \
                     the site the browser means."
                        .into(),
                ));
            }
            Some(host) if !self.allows(&host, 80) => {
                return Err(AppError::Misdirected(format!(
                    "This dashboard does not answer to the name {}. Use its address, or add \
                     the name to [dashboard] allowed_hosts.",
                    Quoted(&host)
                )));
            }
            Some(_) => {}
        }
        // `null` names no site: browsers send it for our own form posts, because every page
        // is served with `Referrer-Policy: no-referrer`. Forged forms are the CSRF token's job.
        if let Some(origin) = request
            .headers()
            .get(header::ORIGIN)
            .filter(|origin| origin.as_bytes() != b"null")
        {
            let origin = String::from_utf8_lossy(origin.as_bytes());
            if !self.allows_origin(&origin) {
                return Err(AppError::Forbidden(format!(
                    "Requests from pages of {} are refused: that is not this dashboard. If it \
                     is reached under that name, add the name to [dashboard] allowed_hosts.",
                    Quoted(&origin)
                )));
            }
        }
        Ok(())
    }
}

/// An IP address as it appears in a `Host` header.
fn literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A name from a request, shortened for quoting back and logging.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        let shown: String = chars.by_ref().take(QUOTED_CHARS).collect();
        let more = if chars.next().is_some() { "…" } else { "" };
        write!(f, "`{}{more}`", shown.escape_debug())
    }
}

/// Middleware: refuses requests that do not name this dashboard (see the module docs).
pub async fn check(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match allowed.check(&request) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            tracing::debug!(reason = %error, "refused: not addressed to this dashboard");
            if request.uri().path().starts_with("/api/") {
                error.into_json()
            } else {
                error.into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, configured: &str) -> AllowedHosts {
        AllowedHosts::new(listen.parse().unwrap(), &configured.parse().unwrap())
    }

    #[test]
    fn a_loopback_listener_answers_to_its_loopback_names_on_its_port() {
        let allowed = hosts("127.0.0.1:3000", "");
        for good in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST:3000",
            "localhost.:3000",
            "[::1]:3000",
        ] {
            assert!(allowed.allows(good, 80), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:3000",
            "127.0.0.1:3001",
            "localhost",
            "127.0.0.1",
            "localhost:3000:1",
            "[::1",
            "",
            ":3000",
            "localhost:",
            "localhost:x",
            "localhost:99999",
        ] {
            assert!(!allowed.allows(bad, 80), "{bad}");
        }
    }

    #[test]
    fn other_listeners_answer_to_their_address_and_the_configured_names() {
        let allowed = hosts("192.168.1.10:8080", "dash.example.com, proxy.local:9000");
        assert!(allowed.allows("192.168.1.10:8080", 80));
        assert!(!allowed.allows("localhost:8080", 80), "not on loopback");
        assert!(allowed.allows("dash.example.com", 80));
        assert!(allowed.allows("Dash.Example.Com:443", 80));
        assert!(allowed.allows("proxy.local:9000", 80));
        assert!(!allowed.allows("proxy.local:9001", 80));
        assert!(!allowed.allows("proxy.local", 80));
        assert!(!allowed.allows("evil.example:8080", 80));

        let wildcard = hosts("0.0.0.0:3000", "dashboard");
        assert!(wildcard.allows("127.0.0.1:3000", 80));
        assert!(wildcard.allows("dashboard:3000", 80));
        assert!(!wildcard.allows("0.0.0.0:3000", 80));
        assert!(!wildcard.allows("evil.example:3000", 80));

        let six = hosts("[::1]:3000", "");
        assert!(six.allows("[::1]:3000", 80));
        assert!(six.allows("localhost:3000", 80));
    }

    #[test]
    fn origins_are_checked_with_their_schemes_default_port() {
        let allowed = hosts("127.0.0.1:3000", "dash.example.com:443");
        assert!(allowed.allows_origin("http://127.0.0.1:3000"));
        assert!(allowed.allows_origin("http://localhost:3000"));
        assert!(allowed.allows_origin("https://dash.example.com"));
        assert!(!allowed.allows_origin("http://dash.example.com"), "port 80");
        for bad in [
            "null",
            "http://evil.example:3000",
            "http://127.0.0.1:3000/path",
            "ftp://127.0.0.1:3000",
            "127.0.0.1:3000",
        ] {
            assert!(!allowed.allows_origin(bad), "{bad}");
        }
    }

    #[test]
    fn the_setting_refuses_what_is_not_a_host_name() {
        assert_eq!("".parse::<HostList>(), Ok(HostList::default()));
        for bad in ["http://x", "x/y", "a b", "x:port", "[nope]", "*"] {
            assert!(bad.parse::<HostList>().is_err(), "{bad}");
        }
    }

    #[test]
    fn refused_names_are_quoted_short_and_escaped() {
        let long = "a".repeat(500);
        let shown = Quoted(&long).to_string();
        assert_eq!(shown.chars().count(), QUOTED_CHARS + 3);
        assert_eq!(Quoted("a\nb").to_string(), "`a\\nb`");
    }
}
