//! The dashboard as a web application: protection against cross-site request forgery, optional
//! authentication, the refusal to listen beyond loopback without it, and the security headers
//! every response carries.
//!
//! **Forms (`POST /invoices`, `POST /scores`)** carry a signed double-submit token. A page with a
//! form gives the browser a random nonce in the cookie `dashboard_csrf` (`HttpOnly`,
//! `SameSite=Strict`) and puts `HMAC-SHA256(per-process key, nonce)` in a hidden `csrf_token`
//! field of each form. A post is accepted only when the field is the MAC of the nonce in the
//! cookie. Another site can make a browser post a form here, but it can neither read the page (no
//! CORS) to learn the field nor set our cookie, and a `SameSite=Strict` cookie is not even sent
//! with its post; without the key it cannot forge a pair either. Nothing is stored per visitor, it
//! works without JavaScript, and it does not depend on host names, so it works behind a reverse
//! proxy that rewrites `Host` (an `Origin` check would not). On top of that, a post that the
//! browser labels `Sec-Fetch-Site: cross-site` or `same-site` (a sibling subdomain) is refused
//! outright. The key is made at start-up, so a page rendered before a restart must be reloaded:
//! the 403 page says so.
//!
//! **The JSON API (`POST /api/*`)** accepts only `Content-Type: application/json`. A cross-site
//! HTML form can only send `application/x-www-form-urlencoded`, `multipart/form-data` or
//! `text/plain`, and a cross-site `fetch` with a JSON content type needs a CORS preflight, which
//! the dashboard does not answer; so no other site can make a browser post to the API, even one
//! that holds cached Basic credentials.
//!
//! **Authentication** (optional, `[dashboard] auth_token`): every route but `/healthz` and
//! `/readyz` needs the token, as `Authorization: Bearer <token>` or as the password of HTTP Basic
//! (any user name), so browsers show their login prompt. Credentials are compared as MACs under
//! the per-process key, which takes the same time whatever they are, and are never logged.

use crate::AppState;
use crate::error::AppError;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

type HmacSha256 = Hmac<Sha256>;

/// The cookie holding the visitor's CSRF nonce.
pub const CSRF_COOKIE: &str = "dashboard_csrf";
/// The hidden form field holding the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
/// Random bytes in a nonce; it travels as twice as many lowercase hex digits.
const NONCE_BYTES: usize = 16;
/// Shortest `auth_token` accepted: a guessable token is worse than an honest "no auth".
pub const MIN_AUTH_TOKEN_CHARS: usize = 16;

/// Our own script, stylesheet and event stream only; no inline code, no framing, forms post
/// only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     frame-ancestors 'none'; form-action 'self'; base-uri 'none'";
/// What the browser's login prompt shows.
const REALM: &str = "Kafka request/reply dashboard";
/// Answered without credentials: orchestrators probe them.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// A yes/no setting: `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch(pub bool);

impl FromStr for Switch {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Switch(true)),
            "false" | "0" | "no" | "off" | "" => Ok(Switch(false)),
            _ => Err("must be true or false (or 1/0, yes/no, on/off)"),
        }
    }
}

/// Whether `ip` can only be reached from this machine (IPv4-mapped loopback included).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Refuses to serve on an address other machines can reach unless requests need credentials or
/// the operator said that something in front of the dashboard takes care of that.
pub fn check_exposure(
    address: SocketAddr,
    authenticated: bool,
    allow_unauthenticated: bool,
) -> anyhow::Result<()> {
    if authenticated || allow_unauthenticated || is_loopback(address.ip()) {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen on {address} without authentication: anyone who can reach that \
         address could send requests and read every reply. Set [dashboard] auth_token (or \
         DASHBOARD_AUTH_TOKEN) to require a token, listen on a loopback address such as \
         127.0.0.1:3000, or, if a proxy in front of the dashboard already authenticates, set \
         [dashboard] allow_unauthenticated = true (or DASHBOARD_ALLOW_UNAUTHENTICATED=1)"
    )
}

/// The per-process key that signs CSRF tokens and blinds credential comparisons, and the
/// configured credential. Neither ever leaves the process.
pub struct Keys {
    key: [u8; 32],
    auth_token: Option<SecretString>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("auth_required", &self.auth_required())
            .finish_non_exhaustive()
    }
}

/// Domain separation: a MAC made for one purpose is never valid for another.
const CSRF_DOMAIN: &[u8] = b"dashboard csrf v1\0";
const CREDENTIAL_DOMAIN: &[u8] = b"dashboard credential v1\0";

impl Keys {
    /// A fresh random key; `auth_token` is what requests must present, if anything.
    pub fn generate(auth_token: Option<SecretString>) -> anyhow::Result<Self> {
        let mut key = [0; 32];
        getrandom::fill(&mut key)
            .map_err(|error| anyhow::anyhow!("no randomness for the CSRF key: {error}"))?;
        Ok(Keys { key, auth_token })
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(domain);
        mac.update(data);
        mac
    }

    /// The form token for `nonce`: what the hidden `csrf_token` field holds.
    pub fn csrf_token(&self, nonce: &str) -> String {
        hex::encode(
            self.mac(CSRF_DOMAIN, nonce.as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `token` is the form token for `nonce`, compared in constant time.
    fn csrf_token_matches(&self, nonce: &str, token: &str) -> bool {
        hex::decode(token).is_ok_and(|given| {
            self.mac(CSRF_DOMAIN, nonce.as_bytes())
                .verify_slice(&given)
                .is_ok()
        })
    }

    /// Equality of two credentials in time that depends on neither: both are MACed under the
    /// key, then the tags are compared in constant time.
    fn same_credential(&self, given: &[u8], expected: &[u8]) -> bool {
        let expected = self
            .mac(CREDENTIAL_DOMAIN, expected)
            .finalize()
            .into_bytes();
        self.mac(CREDENTIAL_DOMAIN, given)
            .verify_slice(&expected)
            .is_ok()
    }

    pub fn auth_required(&self) -> bool {
        self.auth_token.is_some()
    }

    /// Whether the request carries the configured token (always, when none is configured).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.auth_token else {
            return true;
        };
        presented_credential(headers)
            .is_some_and(|given| self.same_credential(&given, expected.expose_secret().as_bytes()))
    }

    /// Checks a form post; returns the visitor's nonce, with which the form may be shown again.
    pub fn check_form(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, AppError> {
        if let Some(site) = cross_site(headers) {
            return Err(AppError::Forbidden(format!(
                "This form was sent from another site (Sec-Fetch-Site: {site}); the dashboard \
                 only accepts forms sent from its own pages."
            )));
        }
        let nonce = cookie_nonce(headers).ok_or_else(|| {
            AppError::Forbidden(
                "The form's anti-forgery cookie is missing: allow cookies for this site, reload \
                 the dashboard and submit the form again."
                    .into(),
            )
        })?;
        let token = form_urlencoded::parse(body)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| {
                AppError::Forbidden(
                    "The form has no anti-forgery token: reload the dashboard and submit the \
                     form from it."
                        .into(),
                )
            })?;
        if !self.csrf_token_matches(&nonce, &token) {
            return Err(AppError::Forbidden(
                "The form's anti-forgery token is not valid (the page may be older than a \
                 restart of the dashboard): reload the page and submit the form again."
                    .into(),
            ));
        }
        Ok(nonce)
    }
}

/// `Sec-Fetch-Site` when the browser says the request comes from another origin's page.
fn cross_site(headers: &HeaderMap) -> Option<&str> {
    let site = headers.get("sec-fetch-site")?.to_str().ok()?;
    ["cross-site", "same-site"]
        .into_iter()
        .find(|bad| site.eq_ignore_ascii_case(bad))
}

/// Checks a `POST /api/*`: JSON only, and never from another site's page.
pub fn check_api_post(headers: &HeaderMap) -> Result<(), AppError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| request_reply::headers::is_json_content_type(value.as_bytes()));
    if !json {
        return Err(AppError::UnsupportedMediaType(
            "The API accepts only JSON bodies sent with Content-Type: application/json.".into(),
        ));
    }
    if let Some(site) = cross_site(headers) {
        return Err(AppError::Forbidden(format!(
            "Requests from another site's pages are refused (Sec-Fetch-Site: {site})."
        )));
    }
    Ok(())
}

/// The credential in `Authorization`: a bearer token, or the password of Basic credentials.
fn presented_credential(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.as_bytes().to_vec())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|byte| *byte == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else {
        None
    }
}

/// The nonce in the `dashboard_csrf` cookie, if it holds a well-formed one (the first that
/// does, should the browser send several).
pub fn cookie_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == CSRF_COOKIE && is_nonce(cookie.value()))
        .map(|cookie| cookie.value().to_owned())
}

fn is_nonce(text: &str) -> bool {
    text.len() == NONCE_BYTES * 2
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// The nonce a page's forms are signed for: the visitor's own, or a fresh one. The jar, as
/// response parts, sets the cookie that hands a fresh one over, and nothing otherwise.
pub fn page_nonce(headers: &HeaderMap) -> Result<(String, CookieJar), AppError> {
    if let Some(nonce) = cookie_nonce(headers) {
        return Ok((nonce, CookieJar::new()));
    }
    let mut bytes = [0; NONCE_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| AppError::Internal(anyhow::anyhow!("no randomness: {error}")))?;
    let nonce = hex::encode(bytes);
    // Behind a TLS-terminating proxy the cookie must not travel over plain HTTP.
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = Cookie::build((CSRF_COOKIE, nonce.clone()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure);
    Ok((nonce, CookieJar::new().add(cookie)))
}

/// `router` with the security headers on every response; pages, the API and the event stream
/// are never stored by caches (static files keep their own `Cache-Control`).
pub fn with_security_headers<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let overriding =
        |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    router.layer(
        ServiceBuilder::new()
            .layer(overriding(
                header::CONTENT_SECURITY_POLICY,
                CONTENT_SECURITY_POLICY,
            ))
            .layer(overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .layer(overriding(header::REFERRER_POLICY, "no-referrer"))
            .layer(overriding(header::X_FRAME_OPTIONS, "DENY"))
            .layer(overriding(
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ))
            .layer(overriding(
                HeaderName::from_static("cross-origin-resource-policy"),
                "same-origin",
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            )),
    )
}

/// Middleware: with an `auth_token` configured, every route but the health checks needs it.
pub async fn require_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let keys = state.security();
    if OPEN_PATHS.contains(&request.uri().path()) || keys.authorized(request.headers()) {
        return next.run(request).await;
    }
    let api = request.uri().path().starts_with("/api/");
    let message = if request.headers().contains_key(header::AUTHORIZATION) {
        "The credentials given are not valid."
    } else {
        "This dashboard requires authentication: log in with the dashboard's token as the \
         password, or send it as Authorization: Bearer <token>."
    };
    tracing::debug!(path = request.uri().path(), "refused: no valid credentials");
    let error = AppError::Unauthorized(message.into());
    let mut response = if api {
        error.into_json()
    } else {
        error.into_response()
    };
    let challenges = response.headers_mut();
    let basic = format!("Basic realm=\"{REALM}\", charset=\"UTF-8\"");
    let bearer = format!("Bearer realm=\"{REALM}\"");
    // Browsers prompt for Basic; API clients are told about Bearer first.
    let order = if api {
        [bearer, basic]
    } else {
        [basic, bearer]
    };
    for challenge in order {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            challenges.append(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_keys(token: Option<&str>) -> Keys {
        Keys::generate(token.map(SecretString::from)).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    fn form_with(keys: &Keys, nonce: &str) -> (HeaderMap, Vec<u8>) {
        let cookie = format!("theme=dark; {CSRF_COOKIE}={nonce}");
        let body = format!(
            "customer=ACME&{CSRF_FIELD}={}&quantity=1",
            keys.csrf_token(nonce)
        );
        (headers(&[("cookie", &cookie)]), body.into_bytes())
    }

    fn forbidden_reason(result: Result<String, AppError>) -> String {
        match result {
            Err(AppError::Forbidden(reason)) => reason,
            other => panic!("expected a 403, got {other:?}"),
        }
    }

    #[test]
    fn a_form_with_the_token_of_its_cookie_passes() {
        let keys = new_keys(None);
        let (headers, body) = form_with(&keys, NONCE);
        assert_eq!(keys.check_form(&headers, &body).unwrap(), NONCE);
        let mut same_origin = headers.clone();
        same_origin.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(keys.check_form(&same_origin, &body).is_ok());
    }

    #[test]
    fn forms_without_a_valid_pair_are_refused_with_the_reason() {
        let keys = new_keys(None);
        let (headers, body) = form_with(&keys, NONCE);

        let no_cookie = forbidden_reason(keys.check_form(&HeaderMap::new(), &body));
        assert!(no_cookie.contains("cookie is missing"), "{no_cookie}");

        let no_field = forbidden_reason(keys.check_form(&headers, b"customer=ACME"));
        assert!(no_field.contains("no anti-forgery token"), "{no_field}");

        // Another visitor's token, a token from another process, garbage: all refused.
        let other_nonce = "fedcba9876543210fedcba9876543210";
        let (_, foreign_body) = form_with(&keys, other_nonce);
        let (_, other_process_body) = form_with(&Keys::generate(None).unwrap(), NONCE);
        for bad in [
            foreign_body,
            other_process_body,
            format!("{CSRF_FIELD}=").into_bytes(),
            format!("{CSRF_FIELD}=zz{}", &keys.csrf_token(NONCE)[2..]).into_bytes(),
            format!("{CSRF_FIELD}={}", &keys.csrf_token(NONCE)[..62]).into_bytes(),
            format!("{CSRF_FIELD}=%C3%A9%C3%A9").into_bytes(),
        ] {
            let reason = forbidden_reason(keys.check_form(&headers, &bad));
            assert!(reason.contains("not valid"), "{reason}");
        }

        for site in ["cross-site", "same-site", "Cross-Site"] {
            let mut cross = headers.clone();
            cross.insert("sec-fetch-site", HeaderValue::from_str(site).unwrap());
            let reason = forbidden_reason(keys.check_form(&cross, &body));
            assert!(reason.contains("another site"), "{reason}");
        }
    }

    #[test]
    fn only_well_formed_nonces_are_read_from_cookies() {
        let read = |cookie: &str| cookie_nonce(&headers(&[("cookie", cookie)]));
        assert_eq!(
            read(&format!("{CSRF_COOKIE}={NONCE}")).as_deref(),
            Some(NONCE)
        );
        assert_eq!(read(&format!("{CSRF_COOKIE}={}", &NONCE[1..])), None);
        assert_eq!(
            read(&format!("{CSRF_COOKIE}={}", NONCE.to_uppercase())),
            None
        );
        assert_eq!(read(&format!("x{CSRF_COOKIE}={NONCE}")), None);
        assert_eq!(read("garbage"), None);
    }

    /// The `Set-Cookie` headers `cookies` add to a response.
    fn set_cookies(cookies: CookieJar) -> Vec<String> {
        cookies
            .into_response()
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn pages_reuse_the_visitors_nonce_or_hand_out_a_fresh_one() {
        let (nonce, cookies) =
            page_nonce(&headers(&[("cookie", &format!("{CSRF_COOKIE}={NONCE}"))])).unwrap();
        assert_eq!(nonce, NONCE);
        assert!(set_cookies(cookies).is_empty());

        let (nonce, cookies) = page_nonce(&HeaderMap::new()).unwrap();
        assert!(is_nonce(&nonce), "{nonce}");
        assert_eq!(
            set_cookies(cookies),
            [format!(
                "{CSRF_COOKIE}={nonce}; HttpOnly; SameSite=Strict; Path=/"
            )]
        );
        let (again, _) = page_nonce(&HeaderMap::new()).unwrap();
        assert_ne!(again, nonce, "nonces are random");

        let (nonce, secure) = page_nonce(&headers(&[("x-forwarded-proto", "https")])).unwrap();
        assert_eq!(
            set_cookies(secure),
            [format!(
                "{CSRF_COOKIE}={nonce}; HttpOnly; SameSite=Strict; Secure; Path=/"
            )]
        );
    }

    #[test]
    fn api_posts_must_be_json_and_not_cross_site() {
        assert!(check_api_post(&headers(&[("content-type", "application/json")])).is_ok());
        assert!(
            check_api_post(&headers(&[(
                "content-type",
                "Application/JSON; charset=utf-8"
            )]))
            .is_ok()
        );
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
        ] {
            assert!(
                matches!(
                    check_api_post(&headers(&[("content-type", content_type)])),
                    Err(AppError::UnsupportedMediaType(_))
                ),
                "{content_type}"
            );
        }
        assert!(matches!(
            check_api_post(&HeaderMap::new()),
            Err(AppError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            check_api_post(&headers(&[
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site")
            ])),
            Err(AppError::Forbidden(_))
        ));
    }

    fn basic(user_and_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_and_password)
        )
    }

    #[test]
    fn the_token_is_accepted_as_bearer_or_basic_password() {
        let token = "s3cret-token-0123456789";
        let keys = new_keys(Some(token));
        assert!(keys.auth_required());
        let authorized = |value: &str| keys.authorized(&headers(&[("authorization", value)]));
        assert!(authorized(&format!("Bearer {token}")));
        assert!(authorized(&format!("bearer  {token} ")));
        assert!(authorized(&basic(&format!("admin:{token}"))));
        assert!(authorized(&basic(&format!(":{token}"))));
        // The password is everything after the first colon.
        let with_colon = "pass:word-0123456789";
        assert!(new_keys(Some(with_colon)).authorized(&headers(&[(
            "authorization",
            &basic(&format!("u:{with_colon}"))
        )])));
        for wrong in [
            "Bearer wrong".to_owned(),
            format!("Bearer {}", &token[1..]),
            format!("Bearer {token}x"),
            "Bearer ".to_owned(),
            basic(token),
            basic(&format!("admin:{token}x")),
            format!("Basic {token}"),
            format!("Digest {token}"),
            token.to_owned(),
        ] {
            assert!(!authorized(&wrong), "{wrong}");
        }
        assert!(!keys.authorized(&HeaderMap::new()));
        assert!(
            new_keys(None).authorized(&HeaderMap::new()),
            "no token configured: open"
        );
    }

    #[test]
    fn credentials_compare_equal_only_when_equal() {
        let keys = new_keys(None);
        assert!(keys.same_credential(b"abc", b"abc"));
        assert!(!keys.same_credential(b"abc", b"abd"));
        assert!(!keys.same_credential(b"abc", b"abcd"));
        assert!(!keys.same_credential(b"", b"abc"));
        assert!(keys.same_credential(b"", b""));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let token = "s3cret-token-0123456789";
        let secret = SecretString::from(token);
        let shown = format!("{secret:?}");
        assert!(
            !shown.contains(token) && shown.contains("REDACTED"),
            "{shown}"
        );
        let keys = new_keys(Some(token));
        let shown = format!("{keys:?}");
        assert!(!shown.contains(token), "{shown}");
        assert!(shown.contains("auth_required: true"), "{shown}");
        assert_eq!(secret.expose_secret(), token);
    }

    #[test]
    fn switches_read_the_usual_spellings() {
        for yes in ["true", "1", "YES", " on "] {
            assert_eq!(yes.parse(), Ok(Switch(true)), "{yes}");
        }
        for no in ["false", "0", "No", "off", ""] {
            assert_eq!(no.parse(), Ok(Switch(false)), "{no}");
        }
        assert!("maybe".parse::<Switch>().is_err());
    }

    #[test]
    fn only_loopback_listeners_may_go_without_authentication() {
        let address = |text: &str| text.parse::<SocketAddr>().unwrap();
        for open in [
            "127.0.0.1:3000",
            "127.1.2.3:3000",
            "[::1]:3000",
            "[::ffff:127.0.0.1]:3000",
        ] {
            assert!(
                check_exposure(address(open), false, false).is_ok(),
                "{open}"
            );
        }
        for exposed in ["0.0.0.0:3000", "192.168.1.10:3000", "[::]:3000"] {
            let error = check_exposure(address(exposed), false, false)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("refusing to listen") && error.contains("auth_token"),
                "{error}"
            );
            assert!(check_exposure(address(exposed), true, false).is_ok());
            assert!(check_exposure(address(exposed), false, true).is_ok());
        }
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let unhex = |text: &str| hex::decode(text).ok();
        assert_eq!(
            unhex(&hex::encode([0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
