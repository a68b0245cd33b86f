//! One attack matrix, run against every registered provider from its declaration alone: what an
//! unauthenticated caller can send must never pass, and what a rotation needs must.

use em_core::error::AuthError;
use em_core::time::Millis;
use em_providers::auth::{
    Auth, Hmac, SignedContent, Timestamp, TimestampSource, DEFAULT_REPLAY_WINDOW, MAX_SIGNATURES,
};
use em_providers::{Clock, Provider};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::common::Case;

/// 2025-06-01T12:00:00Z: any fixed instant serves; the signatures are made for it.
const NOW: Millis = 1_748_779_200_000;
const CURRENT: &[u8] = b"current-secret-8c1f";
const PREVIOUS: &[u8] = b"previous-secret-51aa";

fn clock() -> Clock {
    Clock {
        now: NOW,
        replay_window: DEFAULT_REPLAY_WINDOW,
    }
}

fn timestamp_of(auth: &Auth) -> Option<Timestamp> {
    match auth {
        Auth::Hmac(Hmac { timestamp, .. }) => *timestamp,
        _ => None,
    }
}

/// The sample's body, carrying the signing instant where the scheme signs a timestamp in the body.
fn body_at(scheme: &Auth, body: &[u8], at: Millis) -> Vec<u8> {
    match timestamp_of(scheme) {
        Some(Timestamp {
            source: TimestampSource::Body(path),
            unit,
        }) => {
            let mut v: serde_json::Value = serde_json::from_slice(body).expect("a JSON sample");
            let mut slot = &mut v;
            for k in path {
                slot = &mut slot[*k];
            }
            *slot = match unit {
                em_providers::auth::TimeUnit::Seconds => serde_json::json!(at / 1000),
                em_providers::auth::TimeUnit::Millis => serde_json::json!(at),
            };
            serde_json::to_vec(&v).expect("JSON")
        }
        _ => body.to_vec(),
    }
}

/// How a sender authenticates a body with a secret at an instant: the provider's own way, or another form
/// its scheme accepts.
type Signer<'a> = &'a dyn Fn(&[u8], &[u8], Millis) -> Vec<(String, String)>;

/// The sample's own headers with the authentication `secret` gives at `at`.
fn signed(sign: Signer, base: &HeaderMap, secret: &[u8], body: &[u8], at: Millis) -> HeaderMap {
    let mut h = base.clone();
    for (k, v) in sign(secret, body, at) {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
            HeaderValue::from_str(&v).expect("a header value"),
        );
    }
    h
}

fn check(p: &Provider, h: &HeaderMap, body: &[u8], secrets: &[&[u8]]) -> Result<(), AuthError> {
    let secrets: Vec<Vec<u8>> = secrets.iter().map(|s| s.to_vec()).collect();
    p.authenticate(h, body, &secrets, clock())
}

#[test]
fn every_provider_withstands_the_attack_matrix() {
    for p in em_providers::all() {
        withstands(p, p.auth.signing(), p.name, &|secret, body, at| {
            p.sign(secret, body, at)
        });
        // A provider that takes several schemes is attacked through each.
        let alternatives: &[Auth] = match &p.auth {
            Auth::FirstOf(all) => all,
            one => std::slice::from_ref(one),
        };
        for (i, scheme) in alternatives.iter().enumerate() {
            if i > 0 {
                let name = format!("{} ({})", p.name, scheme.kind());
                withstands(p, scheme, &name, &|secret, body, at| {
                    scheme.sign(secret, body, at)
                });
            }
            by_each_form(p, scheme);
        }
    }
}

/// A scheme that takes two forms of the secret is attacked through each.
fn by_each_form(p: &Provider, scheme: &Auth) {
    if let Auth::TokenOrBasic { header } = scheme {
        let token = Auth::Token { header };
        let name = format!("{} ({header})", p.name);
        withstands(p, &token, &name, &|secret, body, at| {
            token.sign(secret, body, at)
        });
    }
    if let Auth::BearerOrBasic = scheme {
        // Basic with the secret as the password, under a user name of the sender's choosing.
        let name = format!("{} (basic)", p.name);
        withstands(p, &Auth::Basic, &name, &|secret, body, at| {
            let mut credentials = b"alertmanager:".to_vec();
            credentials.extend_from_slice(secret);
            Auth::Basic.sign(&credentials, body, at)
        });
    }
}

/// The matrix for one provider, its deliveries authenticated by `sign`, a signer of `scheme`'s.
fn withstands(p: &Provider, scheme: &Auth, name: &str, sign: Signer) {
    let sample = Case::load(p, p.sample);
    // The sample's own headers, stripped of anything the scheme reads.
    let mut base = sample.headers.clone();
    for h in p.auth.headers() {
        base.remove(h);
    }
    let body = body_at(scheme, &sample.body, NOW);
    let good = signed(sign, &base, CURRENT, &body, NOW);

    // Authentic, as the provider signs it.
    assert_eq!(
        check(p, &good, &body, &[CURRENT]),
        Ok(()),
        "{name}: authentic"
    );

    // Unsigned.
    assert!(
        check(p, &base, &body, &[CURRENT]).is_err(),
        "{name}: unsigned"
    );

    // Forged: signed with a secret the server does not have, or the right header with garbage.
    let forged = signed(sign, &base, b"guessed-secret", &body, NOW);
    assert!(
        check(p, &forged, &body, &[CURRENT]).is_err(),
        "{name}: forged"
    );
    for (k, _) in sign(CURRENT, &body, NOW) {
        let mut garbage = good.clone();
        garbage.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_static("0000"),
        );
        assert!(
            check(p, &garbage, &body, &[CURRENT]).is_err(),
            "{name}: garbage in {k}"
        );
    }

    // Tampered body: a scheme that signs the body notices one changed byte; a token scheme
    // authenticates the sender only, and says so.
    let mut tampered = body.clone();
    tampered.push(b' ');
    let verdict = check(p, &good, &tampered, &[CURRENT]);
    if p.auth.covers_body_of(&good) {
        assert!(verdict.is_err(), "{name}: tampered body accepted");
    } else {
        assert_eq!(
            verdict,
            Ok(()),
            "{name}: a token scheme does not cover the body"
        );
    }

    // The wrong secret configured.
    assert!(
        check(p, &good, &body, &[b"another-secret"]).is_err(),
        "{name}: wrong secret"
    );

    // Rotation: the previous secret passes while both are configured, in either order, and not after.
    let by_previous = signed(sign, &base, PREVIOUS, &body, NOW);
    assert_eq!(
        check(p, &by_previous, &body, &[CURRENT, PREVIOUS]),
        Ok(()),
        "{name}: rotation"
    );
    assert_eq!(
        check(p, &by_previous, &body, &[PREVIOUS, CURRENT]),
        Ok(()),
        "{name}: rotation"
    );
    assert!(
        check(p, &by_previous, &body, &[CURRENT]).is_err(),
        "{name}: retired secret"
    );

    // An oversized signature list: refused before any MAC is computed, even with the right one in it.
    let timestamp_header = match timestamp_of(scheme) {
        Some(Timestamp {
            source: TimestampSource::Header(t),
            ..
        }) => Some(t),
        _ => None,
    };
    let id_header = match scheme {
        Auth::Hmac(Hmac {
            message: SignedContent::IdTimestampAndBody { id_header },
            ..
        }) => Some(id_header),
        _ => None,
    };
    // Listed as the scheme lists them (Standard Webhooks separate by spaces).
    let separator = match scheme {
        Auth::Hmac(Hmac {
            separator: Some(c), ..
        }) => c.to_string(),
        _ => ",".to_string(),
    };
    for (k, v) in sign(CURRENT, &body, NOW) {
        if timestamp_header.is_some_and(|t| t.eq_ignore_ascii_case(&k))
            || id_header.is_some_and(|i| i.eq_ignore_ascii_case(&k))
        {
            continue;
        }
        let mut many = good.clone();
        let list = vec![v.as_str(); 1000].join(&separator);
        many.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(&list).expect("value"),
        );
        let verdict = check(p, &many, &body, &[CURRENT]);
        assert!(verdict.is_err(), "{name}: 1000 signatures in {k}");
        if let Auth::Hmac(Hmac {
            separator: Some(_),
            header,
            ..
        }) = *scheme
        {
            assert_eq!(verdict, Err(AuthError::TooManySignatures(header)), "{name}");
            let within = [v.as_str(); MAX_SIGNATURES].join(&separator);
            many.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(&within).expect("value"),
            );
            assert_eq!(
                check(p, &many, &body, &[CURRENT]),
                Ok(()),
                "{name}: {MAX_SIGNATURES} signatures"
            );
        }
    }

    // A stale or future timestamp, where the scheme signs one; the edges of the window pass.
    if timestamp_of(scheme).is_some() {
        let w = DEFAULT_REPLAY_WINDOW;
        for (at, ok) in [
            (NOW - w - 1000, false),
            (NOW + w + 1000, false),
            (NOW - w + 1000, true),
            (NOW + w - 1000, true),
        ] {
            let b = body_at(scheme, &sample.body, at);
            let h = signed(sign, &base, CURRENT, &b, at);
            let verdict = check(p, &h, &b, &[CURRENT]);
            assert_eq!(
                verdict.is_ok(),
                ok,
                "{name}: signed {} ms from now: {verdict:?}",
                at - NOW
            );
            if !ok {
                assert!(
                    matches!(verdict, Err(AuthError::Stale(_))),
                    "{name}: {verdict:?}"
                );
            }
        }
    }

    // An empty secret configured is no secret: nothing passes, not even a delivery "signed" with it.
    let by_empty = signed(sign, &base, b"", &body, NOW);
    assert_eq!(
        check(p, &by_empty, &body, &[b""]),
        Err(AuthError::NoSecret),
        "{name}: empty"
    );
    assert_eq!(
        check(p, &good, &body, &[]),
        Err(AuthError::NoSecret),
        "{name}: none"
    );
    assert_eq!(
        check(p, &good, &body, &[b"", CURRENT]),
        Ok(()),
        "{name}: an empty one beside"
    );
}
