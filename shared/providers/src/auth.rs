//! Authenticators a provider picks by declaration: HMAC over the raw body (optionally with a timestamp and a
//! replay window), a shared token header, a bearer token, HTTP basic auth, or either of the last two.
//!
//! Every scheme fails closed (no usable secret, nothing accepted), accepts any of several secrets (the current
//! one and the previous one during a rotation) and compares in constant time, length included: both sides are
//! hashed with SHA-256 and the digests compared, so neither the position of a mismatch nor the expected length
//! shows in the time taken.

use base64::Engine;
use em_core::error::AuthError;
use em_core::time::Millis;
use hmac::{Hmac as HmacImpl, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::header;

/// The most signatures one header may list. A rotation needs two; the bound keeps an unauthenticated caller
/// from making the server compare a body against thousands of signatures.
pub const MAX_SIGNATURES: usize = 8;

/// How far a signed timestamp may be from now, either way, unless configured otherwise.
pub const DEFAULT_REPLAY_WINDOW: Millis = 5 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "HMAC-SHA1",
            Algorithm::Sha256 => "HMAC-SHA256",
            Algorithm::Sha512 => "HMAC-SHA512",
        }
    }

    /// The MAC of the concatenation of `parts` under `key`.
    pub fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length, so this cannot fail.
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::Sha1 => run::<HmacImpl<sha1::Sha1>>(key, parts),
            Algorithm::Sha256 => run::<HmacImpl<Sha256>>(key, parts),
            Algorithm::Sha512 => run::<HmacImpl<Sha512>>(key, parts),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            // Lower-case, as every provider sends it.
            Encoding::Hex if text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                hex::decode(text).ok()
            }
            Encoding::Hex => None,
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }
}

/// What the MAC is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedContent {
    /// The raw body.
    Body,
    /// `{before}{timestamp}{between}{body}`: Slack's `v0:{ts}:{body}`, Stripe's `{ts}.{body}`.
    TimestampAndBody {
        before: &'static str,
        between: &'static str,
    },
    /// `{id}.{timestamp}.{body}`, the id being the delivery's own from `id_header`: the Standard Webhooks
    /// (Svix) scheme incident.io signs with.
    IdTimestampAndBody { id_header: &'static str },
}

/// How the configured secret becomes the HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The secret's bytes as they stand.
    Raw,
    /// Standard Webhooks: a secret written `whsec_<base64>` (the prefix optional, as Svix's libraries take
    /// it) keys the HMAC with the decoded bytes. One that is not base64 is used as it stands: no sender
    /// signs with it, so it still fails closed.
    WhsecBase64,
}

impl Key {
    fn of<'a>(self, secret: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self {
            Key::Raw => secret.into(),
            Key::WhsecBase64 => base64::engine::general_purpose::STANDARD
                .decode(secret.strip_prefix(b"whsec_").unwrap_or(secret))
                .map_or(secret.into(), Into::into),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
}

/// Where a signed delivery carries its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampSource {
    Header(&'static str),
    /// A field of the JSON body, given as its path of keys (Linear's `webhookTimestamp`).
    Body(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub source: TimestampSource,
    pub unit: TimeUnit,
}

/// An HMAC signature in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hmac {
    pub header: &'static str,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Before each signature in the header, such as `sha256=` or `v1=`; empty for none.
    pub prefix: &'static str,
    /// Set when the header may list several signatures (`v1=a,v1=b`); items without the prefix are other
    /// schemes' and are skipped.
    pub separator: Option<char>,
    pub message: SignedContent,
    /// Set for schemes with a replay window.
    pub timestamp: Option<Timestamp>,
    pub key: Key,
}

impl Hmac {
    /// The common scheme: HMAC-SHA256 of the raw body, hex, after `prefix` in `header`; `separator` when the
    /// header may list several signatures.
    pub const fn sha256_hex_of_body(
        header: &'static str,
        prefix: &'static str,
        separator: Option<char>,
    ) -> Hmac {
        Hmac {
            header,
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix,
            separator,
            message: SignedContent::Body,
            timestamp: None,
            key: Key::Raw,
        }
    }
}

/// How a provider proves a delivery is its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Hmac(Hmac),
    /// The shared secret itself, verbatim in a header (GitLab `X-Gitlab-Token`).
    Token {
        header: &'static str,
    },
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic <base64 of user:password>`; the secret is `user:password`.
    Basic,
    /// The shared secret verbatim in `header`, else `Authorization: Basic` whose password is the secret
    /// (any user name): for senders that cannot sign and differ in what they can send (a plugin that only
    /// takes credentials in its URL, a script that sets a header). One secret serves both, whatever its
    /// characters (a generated one has no `user:` part). The header, when present, alone decides.
    TokenOrBasic {
        header: &'static str,
    },
    /// `Authorization: Bearer <secret>`, else `Authorization: Basic` whose password is the secret (any user
    /// name): for a sender whose configuration offers both (Alertmanager's `http_config`).
    BearerOrBasic,
    /// Several schemes, for a sender that may use any (Grafana: its HMAC signature when configured, with a
    /// timestamp when that is configured too, else a bearer token or basic auth): the first whose headers
    /// the delivery carries decides, else the last. Each alternative stands on its own, so choosing one
    /// gains a forger nothing: a signature made over a timestamp fails without it.
    FirstOf(&'static [Auth]),
}

/// What a check needs besides the delivery: the time now and how far a signed timestamp may be from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: Millis,
    pub replay_window: Millis,
}

impl Clock {
    pub fn at(now: Millis) -> Self {
        Clock {
            now,
            replay_window: DEFAULT_REPLAY_WINDOW,
        }
    }
}

/// Constant-time equality of two byte strings of any lengths: their SHA-256 digests are compared.
pub fn digest_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    Sha256::digest(a).ct_eq(&Sha256::digest(b))
}

/// Whether `given` equals any of `secrets`; every secret is compared, so the time does not tell which matched.
fn matches_any(secrets: &[&[u8]], given: &[u8]) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        ok |= digest_eq(s, given);
    }
    ok.into()
}

impl Auth {
    /// Checks a delivery against any of `secrets`. Empty secrets are never used: with no other, the check
    /// fails.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Vec<u8>],
        clock: Clock,
    ) -> Result<(), AuthError> {
        let secrets: Vec<&[u8]> = secrets
            .iter()
            .map(Vec::as_slice)
            .filter(|s| !s.is_empty())
            .collect();
        if secrets.is_empty() {
            return Err(AuthError::NoSecret);
        }
        // The shared-secret schemes compare what they were given with each secret.
        let (given, name): (std::borrow::Cow<[u8]>, &'static str) = match self {
            Auth::Hmac(h) => return h.verify(headers, body, &secrets, clock),
            Auth::FirstOf(_) => {
                let secrets: Vec<Vec<u8>> = secrets.iter().map(|s| s.to_vec()).collect();
                return self.chosen(headers).verify(headers, body, &secrets, clock);
            }
            Auth::Token { header } => (
                headers
                    .get(*header)
                    .ok_or(AuthError::Missing(header))?
                    .as_bytes()
                    .into(),
                header,
            ),
            Auth::Bearer => (
                authorization(headers, "bearer")?.as_bytes().into(),
                "Authorization",
            ),
            Auth::Basic => (basic(headers)?.into(), "Authorization"),
            Auth::TokenOrBasic { header } => match headers.get(*header) {
                Some(token) => (token.as_bytes().into(), header),
                None => (password(basic(headers)?)?.into(), "Authorization"),
            },
            // The scheme the header names decides; anything but Bearer is read as Basic.
            Auth::BearerOrBasic => match authorization(headers, "bearer") {
                Ok(token) => (token.as_bytes().into(), "Authorization"),
                Err(_) => (password(basic(headers)?)?.into(), "Authorization"),
            },
        };
        if matches_any(&secrets, &given) {
            Ok(())
        } else {
            Err(AuthError::Mismatch(name))
        }
    }

    /// The headers that authenticate `body` under `secret` at `now`, as the provider itself would send them.
    pub fn sign(&self, secret: &[u8], body: &[u8], now: Millis) -> Vec<(String, String)> {
        match self {
            Auth::Hmac(h) => h.sign(secret, body, now),
            Auth::FirstOf(_) => self.signing().sign(secret, body, now),
            Auth::Token { header } => vec![(
                header.to_string(),
                String::from_utf8_lossy(secret).into_owned(),
            )],
            // A bearer token is what Alertmanager's `http_config.authorization` sends by default.
            Auth::Bearer | Auth::BearerOrBasic => vec![(
                "Authorization".into(),
                format!("Bearer {}", String::from_utf8_lossy(secret)),
            )],
            Auth::Basic => vec![(
                "Authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(secret)
                ),
            )],
            // Either form passes; this is the one a sender that cannot set headers manages (credentials in
            // its URL), with an empty user name.
            Auth::TokenOrBasic { .. } => {
                let mut credentials = b":".to_vec();
                credentials.extend_from_slice(secret);
                vec![(
                    "Authorization".into(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(credentials)
                    ),
                )]
            }
        }
    }

    /// Whether the check covers the body whatever the delivery carries: a token scheme authenticates the
    /// sender, not what it sent.
    pub fn covers_body(&self) -> bool {
        match self {
            Auth::Hmac(_) => true,
            Auth::FirstOf(alternatives) => alternatives.iter().all(Auth::covers_body),
            _ => false,
        }
    }

    /// Whether the check of a delivery with these headers covers its body (the scheme they choose does).
    pub fn covers_body_of(&self, headers: &HeaderMap) -> bool {
        self.chosen(headers).covers_body()
    }

    /// The scheme that checks a delivery with these headers.
    pub fn chosen(&self, headers: &HeaderMap) -> &Auth {
        match self {
            Auth::FirstOf(alternatives) => alternatives
                .iter()
                .find(|a| a.required().iter().all(|h| headers.contains_key(*h)))
                .or(alternatives.last())
                .unwrap_or(self),
            _ => self,
        }
    }

    /// The scheme a sender uses when it can use any: the first of several.
    pub fn signing(&self) -> &Auth {
        match self {
            Auth::FirstOf([first, ..]) => first,
            _ => self,
        }
    }

    /// The headers without which the scheme cannot pass.
    fn required(&self) -> Vec<&'static str> {
        match self {
            Auth::TokenOrBasic { .. } | Auth::BearerOrBasic => vec!["authorization"],
            _ => self.headers(),
        }
    }

    /// The headers the scheme reads, for a delivery stripped of its authentication.
    pub fn headers(&self) -> Vec<&'static str> {
        match self {
            Auth::Hmac(h) => {
                let mut v = vec![h.header];
                if let SignedContent::IdTimestampAndBody { id_header } = h.message {
                    v.push(id_header);
                }
                if let Some(Timestamp {
                    source: TimestampSource::Header(t),
                    ..
                }) = h.timestamp
                {
                    v.push(t);
                }
                v
            }
            Auth::Token { header } => vec![header],
            Auth::Bearer | Auth::Basic | Auth::BearerOrBasic => vec!["authorization"],
            Auth::FirstOf(alternatives) => {
                let mut v: Vec<&'static str> = Vec::new();
                for h in alternatives.iter().flat_map(Auth::headers) {
                    if !v.iter().any(|x| x.eq_ignore_ascii_case(h)) {
                        v.push(h);
                    }
                }
                v
            }
            Auth::TokenOrBasic { header } => vec![header, "authorization"],
        }
    }

    /// One line for people: `providers` and the docs.
    pub fn describe(&self) -> String {
        match self {
            Auth::Hmac(h) => {
                let list = if h.separator.is_some() {
                    ", several allowed"
                } else {
                    ""
                };
                let over = match (h.message, h.timestamp) {
                    (SignedContent::Body, None) => "the raw body".to_string(),
                    (SignedContent::Body, Some(t)) => {
                        format!("the raw body, timestamp in {}", t.source.describe())
                    }
                    (SignedContent::TimestampAndBody { before, between }, t) => format!(
                        "\"{before}{{timestamp}}{between}{{body}}\", timestamp in {}",
                        t.map(|t| t.source.describe()).unwrap_or_default()
                    ),
                    (SignedContent::IdTimestampAndBody { id_header }, t) => format!(
                        "\"{{id}}.{{timestamp}}.{{body}}\", id in {id_header}, timestamp in {}",
                        t.map(|t| t.source.describe()).unwrap_or_default()
                    ),
                };
                let key = match h.key {
                    Key::Raw => "",
                    Key::WhsecBase64 => ", keyed by the secret's whsec_<base64>",
                };
                format!(
                    "{} ({}) of {over} in {}: {}<signature>{list}{key}",
                    h.algorithm.name(),
                    h.encoding.name(),
                    h.header,
                    h.prefix
                )
            }
            Auth::Token { header } => format!("shared token in {header}"),
            Auth::Bearer => "bearer token (Authorization: Bearer <secret>)".into(),
            Auth::Basic => "HTTP basic auth (secret is user:password)".into(),
            Auth::TokenOrBasic { header } => {
                format!("shared token in {header}, or HTTP basic auth (secret is the password, any user)")
            }
            Auth::BearerOrBasic => {
                "bearer token (Authorization: Bearer <secret>), or HTTP basic auth (secret is the password, any user)".into()
            }
            Auth::FirstOf(alternatives) => alternatives
                .iter()
                .map(Auth::describe)
                .collect::<Vec<_>>()
                .join("; else "),
        }
    }

    /// A short name of the scheme, for machine-readable listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Hmac(Hmac {
                timestamp: Some(_), ..
            }) => "hmac-timestamped",
            Auth::Hmac(_) => "hmac",
            Auth::Token { .. } => "token",
            Auth::Bearer => "bearer",
            Auth::Basic => "basic",
            Auth::TokenOrBasic { .. } => "token-or-basic",
            Auth::BearerOrBasic => "bearer-or-basic",
            Auth::FirstOf(_) => "first-of",
        }
    }
}

impl TimestampSource {
    fn describe(&self) -> String {
        match self {
            TimestampSource::Header(h) => h.to_string(),
            TimestampSource::Body(path) => format!("body field {}", path.join(".")),
        }
    }
}

/// The decoded `user:password` of `Authorization: Basic <base64>`.
fn basic(headers: &HeaderMap) -> Result<Vec<u8>, AuthError> {
    base64::engine::general_purpose::STANDARD
        .decode(authorization(headers, "basic")?)
        .map_err(|_| AuthError::Malformed("Authorization"))
}

/// The password of basic-auth credentials: what follows the first `:` (RFC 7617: a user id has none).
fn password(mut credentials: Vec<u8>) -> Result<Vec<u8>, AuthError> {
    let colon = credentials
        .iter()
        .position(|b| *b == b':')
        .ok_or(AuthError::Malformed("Authorization"))?;
    Ok(credentials.split_off(colon + 1))
}

/// The credentials of `Authorization: <scheme> <credentials>`, the scheme matched case-insensitively.
fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Result<&'a str, AuthError> {
    let value = header(headers, "authorization").ok_or(AuthError::Missing("Authorization"))?;
    let (given, rest) = value
        .split_once(' ')
        .ok_or(AuthError::Malformed("Authorization"))?;
    if !given.eq_ignore_ascii_case(scheme) {
        return Err(AuthError::Malformed("Authorization"));
    }
    let credentials = rest.trim();
    if credentials.is_empty() {
        return Err(AuthError::Malformed("Authorization"));
    }
    Ok(credentials)
}

impl Hmac {
    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[&[u8]],
        clock: Clock,
    ) -> Result<(), AuthError> {
        let value = header(headers, self.header).ok_or(AuthError::Missing(self.header))?;
        let timestamp = match self.timestamp {
            None => None,
            Some(t) => Some(t.check(headers, body, clock)?),
        };
        let id = self.signed_id(headers)?;
        let items: Vec<&str> = match self.separator {
            Some(sep) => value.split(sep).map(str::trim).collect(),
            None => vec![value.trim()],
        };
        if items.len() > MAX_SIGNATURES {
            return Err(AuthError::TooManySignatures(self.header));
        }
        let given: Vec<Vec<u8>> = items
            .iter()
            .filter_map(|i| i.strip_prefix(self.prefix))
            .filter_map(|s| self.encoding.decode(s))
            .collect();
        if given.is_empty() {
            return Err(AuthError::Malformed(self.header));
        }
        // Each secret's MAC once, compared with every signature given.
        let keys: Vec<_> = secrets
            .iter()
            .map(|s| self.key.of(s))
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            return Err(AuthError::NoSecret);
        }
        let mut ok = subtle::Choice::from(0u8);
        for key in &keys {
            let mac = self.mac(key, body, id, timestamp.as_deref());
            for g in &given {
                ok |= digest_eq(&mac, g);
            }
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::Mismatch(self.header))
        }
    }

    /// The delivery id the scheme signs, where it signs one.
    fn signed_id<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, AuthError> {
        match self.message {
            SignedContent::IdTimestampAndBody { id_header } => header(headers, id_header)
                .filter(|v| !v.is_empty())
                .map(Some)
                .ok_or(AuthError::Missing(id_header)),
            _ => Ok(None),
        }
    }

    fn mac(&self, key: &[u8], body: &[u8], id: Option<&str>, timestamp: Option<&str>) -> Vec<u8> {
        match self.message {
            SignedContent::Body => self.algorithm.mac(key, &[body]),
            SignedContent::TimestampAndBody { before, between } => self.algorithm.mac(
                key,
                &[
                    before.as_bytes(),
                    timestamp.unwrap_or_default().as_bytes(),
                    between.as_bytes(),
                    body,
                ],
            ),
            SignedContent::IdTimestampAndBody { .. } => self.algorithm.mac(
                key,
                &[
                    id.unwrap_or_default().as_bytes(),
                    b".",
                    timestamp.unwrap_or_default().as_bytes(),
                    b".",
                    body,
                ],
            ),
        }
    }

    fn sign(&self, secret: &[u8], body: &[u8], now: Millis) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let timestamp = self.timestamp.map(|t| t.unit.format(now));
        if let (
            Some(Timestamp {
                source: TimestampSource::Header(h),
                ..
            }),
            Some(ts),
        ) = (self.timestamp, &timestamp)
        {
            out.push((h.to_string(), ts.clone()));
        }
        // A timestamp in the body is the body's own: it is signed as it stands.
        let signed_ts = match self.timestamp.map(|t| t.source) {
            Some(TimestampSource::Body(path)) => crate::extract::field_at(body, path),
            _ => timestamp,
        };
        // A scheme that signs the delivery id names the delivery by its body, as a re-delivery is named
        // by the id of the first.
        let id = match self.message {
            SignedContent::IdTimestampAndBody { id_header } => {
                let id = format!("msg_{}", &hex::encode(Sha256::digest(body))[..27]);
                out.push((id_header.to_string(), id.clone()));
                Some(id)
            }
            _ => None,
        };
        let mac = self.mac(
            &self.key.of(secret),
            body,
            id.as_deref(),
            signed_ts.as_deref(),
        );
        out.push((
            self.header.to_string(),
            format!("{}{}", self.prefix, self.encoding.encode(&mac)),
        ));
        out
    }
}

impl TimeUnit {
    fn format(self, now: Millis) -> String {
        match self {
            TimeUnit::Seconds => (now / 1000).to_string(),
            TimeUnit::Millis => now.to_string(),
        }
    }

    fn to_millis(self, v: i64) -> Option<Millis> {
        match self {
            TimeUnit::Seconds => v.checked_mul(1000),
            TimeUnit::Millis => Some(v),
        }
    }
}

impl Timestamp {
    /// The timestamp as signed, once it is known to be within the replay window.
    fn check(&self, headers: &HeaderMap, body: &[u8], clock: Clock) -> Result<String, AuthError> {
        let (raw, name) = match self.source {
            TimestampSource::Header(h) => (header(headers, h).map(str::to_string), h),
            TimestampSource::Body(path) => (
                crate::extract::field_at(body, path),
                path.last().copied().unwrap_or("timestamp"),
            ),
        };
        let raw = raw.ok_or(AuthError::Missing(name))?;
        let at = raw
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|v| self.unit.to_millis(v))
            .ok_or(AuthError::Malformed(name))?;
        if clock.now.abs_diff(at) > clock.replay_window.unsigned_abs() {
            return Err(AuthError::Stale(name));
        }
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const BODY_HMAC: Hmac = Hmac {
        header: "x-sig",
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: "v1=",
        separator: Some(','),
        message: SignedContent::Body,
        timestamp: None,
        key: Key::Raw,
    };

    #[test]
    fn signatures_without_the_prefix_are_skipped_and_a_list_is_bounded() {
        let auth = Auth::Hmac(BODY_HMAC);
        let secrets = vec![b"s".to_vec()];
        let good = auth.sign(b"s", b"{}", 0).remove(0).1;
        let clock = Clock::at(0);
        let with = |v: &str| auth.verify(&headers(&[("x-sig", v)]), b"{}", &secrets, clock);
        assert_eq!(with(&format!("v0=ab, {good}")), Ok(()));
        assert_eq!(with("v0=ab"), Err(AuthError::Malformed("x-sig")));
        let many = ["v1=00"; MAX_SIGNATURES].join(",");
        assert_eq!(
            with(&format!("{many},{good}")),
            Err(AuthError::TooManySignatures("x-sig"))
        );
        assert_eq!(
            with(&format!(
                "{},{good}",
                ["v1=00"; MAX_SIGNATURES - 1].join(",")
            )),
            Ok(())
        );
    }

    #[test]
    fn empty_secrets_are_never_used() {
        let auth = Auth::Token { header: "x-token" };
        let h = headers(&[("x-token", "")]);
        assert_eq!(
            auth.verify(&h, b"{}", &[Vec::new()], Clock::at(0)),
            Err(AuthError::NoSecret)
        );
        assert_eq!(
            auth.verify(&h, b"{}", &[], Clock::at(0)),
            Err(AuthError::NoSecret)
        );
    }

    const EITHER: Auth = Auth::TokenOrBasic {
        header: "x-em-agent-token",
    };

    fn basic_of(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn token_or_basic_fails_closed_without_a_secret() {
        for h in [
            headers(&[("x-em-agent-token", "")]),
            headers(&[("x-em-agent-token", "s3cret")]),
            headers(&[("authorization", &basic_of(":"))]),
            headers(&[("authorization", &basic_of("ci:s3cret"))]),
        ] {
            assert_eq!(
                EITHER.verify(&h, b"{}", &[], Clock::at(0)),
                Err(AuthError::NoSecret)
            );
            assert_eq!(
                EITHER.verify(&h, b"{}", &[Vec::new()], Clock::at(0)),
                Err(AuthError::NoSecret)
            );
        }
    }

    #[test]
    fn token_or_basic_takes_the_secret_as_a_token_or_as_a_password() {
        let secrets = vec![b"s3cret".to_vec()];
        let clock = Clock::at(0);
        let token = |v: &str| headers(&[("x-em-agent-token", v)]);
        let basic = |v: &str| headers(&[("authorization", &basic_of(v))]);
        assert_eq!(
            EITHER.verify(&token("s3cret"), b"", &secrets, clock),
            Ok(())
        );
        // Any user name, an empty one included; the password may hold colons of its own.
        for credentials in ["ci:s3cret", "jenkins:s3cret", ":s3cret"] {
            assert_eq!(
                EITHER.verify(&basic(credentials), b"", &secrets, clock),
                Ok(()),
                "{credentials}"
            );
        }
        let colons = vec![b"a:b".to_vec()];
        assert_eq!(EITHER.verify(&basic("ci:a:b"), b"", &colons, clock), Ok(()));
        assert!(EITHER.verify(&basic("a:b"), b"", &colons, clock).is_err());
        // Compared whole, length included: a prefix or an extension is not the secret, nor is the user's
        // part with it.
        for wrong in ["s3cre", "s3crett", "ci:s3cret", "S3CRET"] {
            assert_eq!(
                EITHER.verify(&token(wrong), b"", &secrets, clock),
                Err(AuthError::Mismatch("x-em-agent-token")),
                "{wrong}"
            );
        }
        for wrong in ["ci:s3cre", "ci:s3crett", "s3cret:ci", "ci:", "ci:ci:s3cret"] {
            assert_eq!(
                EITHER.verify(&basic(wrong), b"", &secrets, clock),
                Err(AuthError::Mismatch("Authorization")),
                "{wrong}"
            );
        }
        // An empty token is compared (and fails); credentials without a password are malformed.
        assert_eq!(
            EITHER.verify(&token(""), b"", &secrets, clock),
            Err(AuthError::Mismatch("x-em-agent-token"))
        );
        for malformed in ["", "s3cret"] {
            assert_eq!(
                EITHER.verify(&basic(malformed), b"", &secrets, clock),
                Err(AuthError::Malformed("Authorization")),
                "{malformed}"
            );
        }
        assert_eq!(
            EITHER.verify(&HeaderMap::new(), b"", &secrets, clock),
            Err(AuthError::Missing("Authorization"))
        );
        assert_eq!(
            EITHER.verify(
                &headers(&[("authorization", "Bearer s3cret")]),
                b"",
                &secrets,
                clock
            ),
            Err(AuthError::Malformed("Authorization"))
        );
    }

    #[test]
    fn token_or_basic_lets_the_token_header_alone_decide() {
        let secrets = vec![b"s3cret".to_vec()];
        let both = |token: &str, credentials: &str| {
            headers(&[
                ("x-em-agent-token", token),
                ("authorization", &basic_of(credentials)),
            ])
        };
        assert_eq!(
            EITHER.verify(&both("guess", "ci:s3cret"), b"", &secrets, Clock::at(0)),
            Err(AuthError::Mismatch("x-em-agent-token"))
        );
        assert_eq!(
            EITHER.verify(&both("s3cret", "ci:guess"), b"", &secrets, Clock::at(0)),
            Ok(())
        );
    }

    #[test]
    fn token_or_basic_accepts_the_previous_secret_during_a_rotation() {
        let current = b"new-one".to_vec();
        let previous = b"old-one".to_vec();
        for h in [
            headers(&[("x-em-agent-token", "old-one")]),
            headers(&[("authorization", &basic_of("ci:old-one"))]),
        ] {
            for secrets in [
                vec![current.clone(), previous.clone()],
                vec![previous.clone(), current.clone()],
            ] {
                assert_eq!(EITHER.verify(&h, b"", &secrets, Clock::at(0)), Ok(()));
            }
            assert!(EITHER
                .verify(&h, b"", std::slice::from_ref(&current), Clock::at(0))
                .is_err());
        }
        // What it signs, it accepts; and it says which headers it reads.
        let signed = EITHER.sign(&current, b"{}", 0);
        let pairs: Vec<(&str, &str)> = signed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(pairs, vec![("Authorization", "Basic Om5ldy1vbmU=")]);
        assert_eq!(
            EITHER.verify(&headers(&pairs), b"{}", &[current], Clock::at(0)),
            Ok(())
        );
        assert_eq!(EITHER.headers(), vec!["x-em-agent-token", "authorization"]);
        assert!(!EITHER.covers_body());
    }

    #[test]
    fn authorization_schemes_are_matched_case_insensitively() {
        let secrets = vec![b"t0ken".to_vec()];
        let clock = Clock::at(0);
        for v in ["Bearer t0ken", "bearer t0ken", "BEARER  t0ken "] {
            assert_eq!(
                Auth::Bearer.verify(&headers(&[("authorization", v)]), b"", &secrets, clock),
                Ok(()),
                "{v}"
            );
        }
        assert_eq!(
            Auth::Bearer.verify(
                &headers(&[("authorization", "Basic t0ken")]),
                b"",
                &secrets,
                clock
            ),
            Err(AuthError::Malformed("Authorization"))
        );
        assert_eq!(
            Auth::Bearer.verify(
                &headers(&[("authorization", "Bearer t0ke")]),
                b"",
                &secrets,
                clock
            ),
            Err(AuthError::Mismatch("Authorization"))
        );
    }
}
