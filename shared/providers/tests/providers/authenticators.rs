//! Each authenticator once, against published vectors: the providers' own documentation examples
//! (`fixtures/signature-vectors.json`, with their sources) and the RFCs' test cases for what no provider
//! publishes (RFC 4231 and RFC 2202 for HMAC-SHA-512 and HMAC-SHA-1, RFC 7617 for basic auth, alone or beside
//! a token header, RFC 6750 for bearer tokens). Base64 forms of the RFC digests were computed outside this code
//! (Python's `base64`).

use em_core::error::AuthError;
use em_providers::auth::{
    Algorithm, Auth, Clock, Encoding, Hmac, Key, SignedContent, TimeUnit, Timestamp,
    TimestampSource, DEFAULT_REPLAY_WINDOW,
};
use http::HeaderMap;
use serde_json::Value;

use crate::common::{headers, FIXTURES};

fn vectors(provider: &str) -> Vec<Value> {
    let text = std::fs::read(format!("{FIXTURES}/signature-vectors.json")).expect("vectors");
    let all: Value = serde_json::from_slice(&text).expect("JSON");
    all["vectors"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|v| v["provider"] == provider)
        .cloned()
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn sign_one(auth: &Auth, secret: &[u8], body: &[u8], now: i64) -> Vec<(String, String)> {
    auth.sign(secret, body, now)
}

const HEX_BODY: Hmac = Hmac {
    header: "X-Hub-Signature-256",
    algorithm: Algorithm::Sha256,
    encoding: Encoding::Hex,
    prefix: "sha256=",
    separator: None,
    message: SignedContent::Body,
    timestamp: None,
    key: Key::Raw,
};

#[test]
fn hmac_of_the_body_in_hex_with_a_prefix_github() {
    let auth = Auth::Hmac(HEX_BODY);
    let v = &vectors("github")[0];
    let (secret, body) = (s(&v["secret"]).as_bytes(), s(&v["body"]).as_bytes());
    let h = headers(&[(s(&v["header"]), s(&v["expected_header_value"]))]);
    assert_eq!(
        auth.verify(&h, body, &[secret.to_vec()], Clock::at(0)),
        Ok(())
    );
    assert_eq!(
        sign_one(&auth, secret, body, 0),
        vec![(
            "X-Hub-Signature-256".to_string(),
            s(&v["expected_header_value"]).to_string()
        )]
    );
    assert_eq!(
        auth.verify(&h, b"Hello, World?", &[secret.to_vec()], Clock::at(0)),
        Err(AuthError::Mismatch("X-Hub-Signature-256"))
    );
}

#[test]
fn hmac_lists_of_versioned_signatures_circleci() {
    let auth = Auth::Hmac(Hmac {
        header: "circleci-signature",
        prefix: "v1=",
        separator: Some(','),
        ..HEX_BODY
    });
    let vs = vectors("circleci");
    assert_eq!(vs.len(), 2);
    for v in &vs {
        let (secret, body) = (s(&v["secret"]).as_bytes(), s(&v["body"]).as_bytes());
        let expected = s(&v["expected_header_value"]);
        assert_eq!(
            sign_one(&auth, secret, body, 0),
            vec![("circleci-signature".to_string(), expected.to_string())]
        );
        // A future scheme's signature beside ours is skipped, wherever it stands.
        for value in [
            expected.to_string(),
            format!("v2=abcdef,{expected}"),
            format!("{expected}, v2=abcdef"),
        ] {
            let h = headers(&[("circleci-signature", &value)]);
            assert_eq!(
                auth.verify(&h, body, &[secret.to_vec()], Clock::at(0)),
                Ok(()),
                "{value}"
            );
        }
        let h = headers(&[("circleci-signature", "v2=abcdef")]);
        assert_eq!(
            auth.verify(&h, body, &[secret.to_vec()], Clock::at(0)),
            Err(AuthError::Malformed("circleci-signature"))
        );
    }
    // Each vector's signature is its own secret's: swapping them fails.
    let h = headers(&[("circleci-signature", s(&vs[0]["expected_header_value"]))]);
    assert!(auth
        .verify(
            &h,
            s(&vs[0]["body"]).as_bytes(),
            &[s(&vs[1]["secret"]).as_bytes().to_vec()],
            Clock::at(0)
        )
        .is_err());
}

const SLACK: Hmac = Hmac {
    header: "X-Slack-Signature",
    algorithm: Algorithm::Sha256,
    encoding: Encoding::Hex,
    prefix: "v0=",
    separator: None,
    message: SignedContent::TimestampAndBody {
        before: "v0:",
        between: ":",
    },
    timestamp: Some(Timestamp {
        source: TimestampSource::Header("X-Slack-Request-Timestamp"),
        unit: TimeUnit::Seconds,
    }),
    key: Key::Raw,
};

#[test]
fn hmac_of_a_timestamp_and_the_body_with_a_replay_window_slack() {
    let auth = Auth::Hmac(SLACK);
    let v = &vectors("slack")[0];
    let (secret, body) = (s(&v["secret"]).as_bytes(), s(&v["body"]).as_bytes());
    let ts: i64 = s(&v["timestamp"]).parse().expect("seconds");
    let pairs: Vec<(String, String)> = v["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| (k.clone(), s(v).to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let h = headers(&refs);
    let at = |ms: i64| Clock {
        now: ms,
        replay_window: DEFAULT_REPLAY_WINDOW,
    };
    assert_eq!(
        auth.verify(&h, body, &[secret.to_vec()], at(ts * 1000)),
        Ok(())
    );
    let mut signed = sign_one(&auth, secret, body, ts * 1000 + 999);
    signed.sort();
    assert_eq!(
        signed,
        vec![
            (
                "X-Slack-Request-Timestamp".to_string(),
                s(&v["timestamp"]).to_string()
            ),
            (
                "X-Slack-Signature".to_string(),
                s(&v["expected_header_value"]).to_string()
            ),
        ]
    );
    // Five minutes either way pass; beyond, the same authentic delivery is a replay.
    assert_eq!(
        auth.verify(&h, body, &[secret.to_vec()], at(ts * 1000 + 300_000)),
        Ok(())
    );
    assert_eq!(
        auth.verify(&h, body, &[secret.to_vec()], at(ts * 1000 - 300_000)),
        Ok(())
    );
    assert_eq!(
        auth.verify(&h, body, &[secret.to_vec()], at(ts * 1000 + 301_000)),
        Err(AuthError::Stale("X-Slack-Request-Timestamp"))
    );
    let narrow = Clock {
        now: ts * 1000 + 61_000,
        replay_window: 60_000,
    };
    assert_eq!(
        auth.verify(&h, body, &[secret.to_vec()], narrow),
        Err(AuthError::Stale("X-Slack-Request-Timestamp"))
    );
    // The timestamp is signed: moving it breaks the signature even inside the window.
    let moved = headers(&[
        ("X-Slack-Request-Timestamp", &(ts + 1).to_string()),
        ("X-Slack-Signature", s(&v["expected_header_value"])),
    ]);
    assert_eq!(
        auth.verify(&moved, body, &[secret.to_vec()], at(ts * 1000)),
        Err(AuthError::Mismatch("X-Slack-Signature"))
    );
    let unstamped = headers(&[("X-Slack-Signature", s(&v["expected_header_value"]))]);
    assert_eq!(
        auth.verify(&unstamped, body, &[secret.to_vec()], at(ts * 1000)),
        Err(AuthError::Missing("X-Slack-Request-Timestamp"))
    );
}

#[test]
fn hmac_in_base64_and_other_algorithms_rfc4231_rfc2202() {
    // RFC 4231 test case 2 and RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
    let (key, data) = (b"Jefe".to_vec(), b"what do ya want for nothing?");
    for (algorithm, base64, hex) in [
        (
            Algorithm::Sha256,
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            Algorithm::Sha512,
            "Fkt6e/z4GeLjlfvnO1bgo4e9ZCIugx/WECcM1+olBVSXWL91wFqZSm0DT2X48Ob9yuqxo01Ka0tjbgcKOLznNw==",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
        (
            Algorithm::Sha1,
            "7/zfauXrL6LSdBbV8YTfnCWafHk=",
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        ),
    ] {
        for (encoding, value) in [(Encoding::Base64, base64), (Encoding::Hex, hex)] {
            let auth = Auth::Hmac(Hmac {
                header: "X-Signature",
                algorithm,
                encoding,
                prefix: "",
                ..HEX_BODY
            });
            let h = headers(&[("X-Signature", value)]);
            assert_eq!(
                auth.verify(&h, data, std::slice::from_ref(&key), Clock::at(0)),
                Ok(()),
                "{algorithm:?} {encoding:?}"
            );
            assert_eq!(
                sign_one(&auth, &key, data, 0),
                vec![("X-Signature".to_string(), value.to_string())]
            );
        }
    }
}

#[test]
fn timestamps_in_the_body_in_milliseconds() {
    // Linear's shape: the signature covers the raw body, which carries `webhookTimestamp` in milliseconds.
    let auth = Auth::Hmac(Hmac {
        header: "Linear-Signature",
        prefix: "",
        timestamp: Some(Timestamp {
            source: TimestampSource::Body(&["webhookTimestamp"]),
            unit: TimeUnit::Millis,
        }),
        ..HEX_BODY
    });
    let body = br#"{"action":"create","webhookTimestamp":1676056940508}"#;
    let secret = b"lin_wh_secret".to_vec();
    let signed = sign_one(&auth, &secret, body, 0);
    let h = headers(&[(signed[0].0.as_str(), signed[0].1.as_str())]);
    let at = |now| Clock {
        now,
        replay_window: DEFAULT_REPLAY_WINDOW,
    };
    assert_eq!(
        auth.verify(
            &h,
            body,
            std::slice::from_ref(&secret),
            at(1_676_056_940_508 + 60_000)
        ),
        Ok(())
    );
    assert_eq!(
        auth.verify(
            &h,
            body,
            std::slice::from_ref(&secret),
            at(1_676_056_940_508 + 600_000)
        ),
        Err(AuthError::Stale("webhookTimestamp"))
    );
    assert_eq!(
        auth.verify(&h, br#"{"action":"create"}"#, &[secret], at(0)),
        Err(AuthError::Missing("webhookTimestamp"))
    );
}

#[test]
fn basic_auth_rfc7617() {
    let h = headers(&[("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")]);
    let secret = b"Aladdin:open sesame".to_vec();
    assert_eq!(
        Auth::Basic.verify(&h, b"{}", std::slice::from_ref(&secret), Clock::at(0)),
        Ok(())
    );
    assert_eq!(
        sign_one(&Auth::Basic, &secret, b"{}", 0),
        vec![(
            "Authorization".to_string(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_string()
        )]
    );
    for (value, err) in [
        (
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZg==",
            AuthError::Mismatch("Authorization"),
        ),
        ("Basic not base64!", AuthError::Malformed("Authorization")),
        (
            "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            AuthError::Malformed("Authorization"),
        ),
    ] {
        assert_eq!(
            Auth::Basic.verify(
                &headers(&[("Authorization", value)]),
                b"{}",
                std::slice::from_ref(&secret),
                Clock::at(0)
            ),
            Err(err),
            "{value}"
        );
    }
}

#[test]
fn bearer_tokens_rfc6750_and_shared_token_headers() {
    let token = b"mF_9.B5f-4.1JqM".to_vec();
    let h = headers(&[("Authorization", "Bearer mF_9.B5f-4.1JqM")]);
    assert_eq!(
        Auth::Bearer.verify(&h, b"{}", std::slice::from_ref(&token), Clock::at(0)),
        Ok(())
    );
    assert_eq!(
        sign_one(&Auth::Bearer, &token, b"{}", 0),
        vec![(
            "Authorization".to_string(),
            "Bearer mF_9.B5f-4.1JqM".to_string()
        )]
    );
    let shared = Auth::Token {
        header: "X-Gitlab-Token",
    };
    let h = headers(&[("X-Gitlab-Token", "mF_9.B5f-4.1JqM")]);
    assert_eq!(
        shared.verify(&h, b"{}", std::slice::from_ref(&token), Clock::at(0)),
        Ok(())
    );
    // A prefix, an extension or a different case of the token is not the token.
    for wrong in ["mF_9.B5f-4.1Jq", "mF_9.B5f-4.1JqMM", "MF_9.B5F-4.1JQM"] {
        let h = headers(&[("X-Gitlab-Token", wrong)]);
        assert_eq!(
            shared.verify(&h, b"{}", std::slice::from_ref(&token), Clock::at(0)),
            Err(AuthError::Mismatch("X-Gitlab-Token")),
            "{wrong}"
        );
    }
}

#[test]
fn token_or_basic_rfc7617_and_a_shared_token_header() {
    let auth = Auth::TokenOrBasic {
        header: "X-EM-Agent-Token",
    };
    // RFC 7617's example credentials: user "Aladdin", password "open sesame", the secret.
    let secret = b"open sesame".to_vec();
    let accepts = |pairs: &[(&str, &str)]| {
        auth.verify(
            &headers(pairs),
            b"{}",
            std::slice::from_ref(&secret),
            Clock::at(0),
        )
    };
    assert_eq!(
        accepts(&[("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")]),
        Ok(())
    );
    assert_eq!(accepts(&[("X-EM-Agent-Token", "open sesame")]), Ok(()));
    // Signed with an empty user name: base64 of ":open sesame", computed with Python's `base64`.
    assert_eq!(
        sign_one(&auth, &secret, b"{}", 0),
        vec![(
            "Authorization".to_string(),
            "Basic Om9wZW4gc2VzYW1l".to_string()
        )]
    );
    assert_eq!(
        accepts(&[("Authorization", "Basic Om9wZW4gc2VzYW1l")]),
        Ok(())
    );
    // "Aladdin:open sesamf".
    assert_eq!(
        accepts(&[("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZg==")]),
        Err(AuthError::Mismatch("Authorization"))
    );
    // The token header, when sent, decides alone: right basic credentials beside a wrong token fail.
    assert_eq!(
        accepts(&[
            ("X-EM-Agent-Token", "open sesamf"),
            ("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ]),
        Err(AuthError::Mismatch("X-EM-Agent-Token"))
    );
    assert_eq!(accepts(&[]), Err(AuthError::Missing("Authorization")));
}

#[test]
fn bearer_or_basic_takes_the_secret_as_a_bearer_token_or_as_a_basic_password() {
    let secret = b"open sesame".to_vec();
    let accepts = |pairs: &[(&str, &str)]| {
        Auth::BearerOrBasic.verify(
            &headers(pairs),
            b"{}",
            std::slice::from_ref(&secret),
            Clock::at(0),
        )
    };
    // RFC 6750's scheme, matched letter case aside, and RFC 7617's example credentials (user "Aladdin").
    assert_eq!(accepts(&[("Authorization", "Bearer open sesame")]), Ok(()));
    assert_eq!(accepts(&[("Authorization", "bearer open sesame")]), Ok(()));
    assert_eq!(
        accepts(&[("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")]),
        Ok(())
    );
    assert_eq!(
        accepts(&[("Authorization", "Bearer open sesamf")]),
        Err(AuthError::Mismatch("Authorization"))
    );
    // "Aladdin:open sesamf".
    assert_eq!(
        accepts(&[("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZg==")]),
        Err(AuthError::Mismatch("Authorization"))
    );
    // Neither scheme: not a credential at all.
    assert_eq!(
        accepts(&[("Authorization", "Token open sesame")]),
        Err(AuthError::Malformed("Authorization"))
    );
    assert_eq!(accepts(&[]), Err(AuthError::Missing("Authorization")));
    assert_eq!(
        Auth::BearerOrBasic.verify(
            &headers(&[("Authorization", "Bearer open sesame")]),
            b"{}",
            &[Vec::new()],
            Clock::at(0)
        ),
        Err(AuthError::NoSecret)
    );
    assert_eq!(
        sign_one(&Auth::BearerOrBasic, &secret, b"{}", 0),
        vec![(
            "Authorization".to_string(),
            "Bearer open sesame".to_string()
        )]
    );
}

#[test]
fn standard_webhooks_signatures_of_the_id_timestamp_and_body_incident_io() {
    // incident.io's own declaration, against Svix's published vector.
    let auth = em_providers::by_name("incident-io")
        .expect("incident-io")
        .auth;
    let v = &vectors("incident-io")[0];
    let (secret, body, id, ts) = (
        s(&v["secret"]),
        s(&v["body"]),
        s(&v["id"]),
        s(&v["timestamp"]),
    );
    let expected = s(&v["expected_header_value"]);
    let at = |now_s: i64| Clock::at(now_s * 1000);
    let now: i64 = ts.parse().expect("seconds");
    let with = |signature: &str, id: &str, ts: &str| {
        headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", signature),
        ])
    };
    let secrets = [secret.as_bytes().to_vec()];
    let verify = |h, body: &str, secrets: &[Vec<u8>], clock| {
        auth.verify(&h, body.as_bytes(), secrets, clock)
    };
    assert_eq!(
        verify(with(expected, id, ts), body, &secrets, at(now)),
        Ok(())
    );
    // The key is the base64 after `whsec_`; as Svix's libraries take it, the prefix may be left out.
    let bare = [secret.trim_start_matches("whsec_").as_bytes().to_vec()];
    assert_eq!(verify(with(expected, id, ts), body, &bare, at(now)), Ok(()));
    // The secret's text itself is not the key.
    let literal = [secret.as_bytes().to_vec()];
    let as_text = Auth::Hmac(Hmac {
        key: Key::Raw,
        ..match auth {
            Auth::Hmac(h) => h,
            _ => panic!("incident.io signs"),
        }
    });
    assert_eq!(
        as_text.verify(&with(expected, id, ts), body.as_bytes(), &literal, at(now)),
        Err(AuthError::Mismatch("webhook-signature"))
    );
    // A list separated by spaces: other versions and other secrets' signatures beside it are skipped.
    let list = format!("v2,abcd v1,Zm9yZ2Vk {expected}");
    assert_eq!(verify(with(&list, id, ts), body, &secrets, at(now)), Ok(()));
    // The id and the timestamp are signed: another of either fails, and so does another body.
    assert_eq!(
        verify(with(expected, "msg_other", ts), body, &secrets, at(now)),
        Err(AuthError::Mismatch("webhook-signature"))
    );
    let later = (now + 1).to_string();
    assert_eq!(
        verify(with(expected, id, &later), body, &secrets, at(now)),
        Err(AuthError::Mismatch("webhook-signature"))
    );
    assert_eq!(
        verify(
            with(expected, id, ts),
            "{\"test\": 2432232315}",
            &secrets,
            at(now)
        ),
        Err(AuthError::Mismatch("webhook-signature"))
    );
    assert_eq!(
        verify(
            headers(&[("webhook-timestamp", ts), ("webhook-signature", expected)]),
            body,
            &secrets,
            at(now)
        ),
        Err(AuthError::Missing("webhook-id"))
    );
    // Five minutes either way.
    assert_eq!(
        verify(with(expected, id, ts), body, &secrets, at(now + 300)),
        Ok(())
    );
    assert_eq!(
        verify(with(expected, id, ts), body, &secrets, at(now - 300)),
        Ok(())
    );
    for off in [301, -301] {
        assert_eq!(
            verify(with(expected, id, ts), body, &secrets, at(now + off)),
            Err(AuthError::Stale("webhook-timestamp"))
        );
    }
    // What it signs, it accepts: an id of its own in `webhook-id`, the timestamp, a `v1,` signature.
    let signed = auth.sign(secret.as_bytes(), body.as_bytes(), now * 1000);
    let names: Vec<&str> = signed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["webhook-timestamp", "webhook-id", "webhook-signature"]
    );
    assert_eq!(signed[0].1, ts);
    let pairs: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(verify(headers(&pairs), body, &secrets, at(now)), Ok(()));
}

#[test]
fn the_first_scheme_a_delivery_carries_decides_grafana() {
    let auth = em_providers::by_name("grafana").expect("grafana").auth;
    let secret = b"grafana-hmac-secret".to_vec();
    let secrets = std::slice::from_ref(&secret);
    let body = br#"{"status":"firing","alerts":[]}"#;
    let now = 1_750_000_000_000;
    let pairs = |signed: &[(String, String)]| -> Vec<(String, String)> { signed.to_vec() };
    let map = |p: &[(String, String)]| {
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers(&refs)
    };
    // Grafana 12 with a timestamp header: `{seconds}:{body}`, in hex, held to the replay window.
    let signed = pairs(&auth.sign(&secret, body, now));
    let names: Vec<&str> = signed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "X-Grafana-Alerting-Timestamp",
            "X-Grafana-Alerting-Signature"
        ]
    );
    assert_eq!(signed[0].1, "1750000000");
    let mac = Algorithm::Sha256.mac(&secret, &[b"1750000000:", body]);
    assert_eq!(signed[1].1, hex::encode(mac));
    assert_eq!(
        auth.verify(&map(&signed), body, secrets, Clock::at(now)),
        Ok(())
    );
    assert_eq!(
        auth.verify(&map(&signed), body, secrets, Clock::at(now + 301_000)),
        Err(AuthError::Stale("X-Grafana-Alerting-Timestamp"))
    );
    // A stale delivery stripped of its timestamp is read as signing its body alone, and fails.
    let stripped: Vec<(String, String)> = signed[1..].to_vec();
    assert_eq!(
        auth.verify(&map(&stripped), body, secrets, Clock::at(now + 3_600_000)),
        Err(AuthError::Mismatch("X-Grafana-Alerting-Signature"))
    );
    // A contact point without a timestamp header signs the body alone.
    let body_only = vec![(
        "X-Grafana-Alerting-Signature".to_string(),
        hex::encode(Algorithm::Sha256.mac(&secret, &[body])),
    )];
    assert_eq!(
        auth.verify(&map(&body_only), body, secrets, Clock::at(now)),
        Ok(())
    );
    assert_eq!(
        auth.verify(&map(&body_only), b"{}", secrets, Clock::at(now)),
        Err(AuthError::Mismatch("X-Grafana-Alerting-Signature"))
    );
    // Before Grafana 12, or by choice: a bearer token, or basic auth with the secret as the password.
    let bearer = vec![(
        "Authorization".to_string(),
        "Bearer grafana-hmac-secret".to_string(),
    )];
    assert_eq!(
        auth.verify(&map(&bearer), body, secrets, Clock::at(now)),
        Ok(())
    );
    let basic = vec![(
        "Authorization".to_string(),
        "Basic Z3JhZmFuYTpncmFmYW5hLWhtYWMtc2VjcmV0".to_string(), // grafana:grafana-hmac-secret
    )];
    assert_eq!(
        auth.verify(&map(&basic), body, secrets, Clock::at(now)),
        Ok(())
    );
    assert!(!auth.covers_body_of(&map(&bearer)) && auth.covers_body_of(&map(&body_only)));
    // A signature header present decides, whatever credentials come beside it.
    let mut both = bearer.clone();
    both.push(("X-Grafana-Alerting-Signature".to_string(), "00".repeat(32)));
    assert_eq!(
        auth.verify(&map(&both), body, secrets, Clock::at(now)),
        Err(AuthError::Mismatch("X-Grafana-Alerting-Signature"))
    );
    assert_eq!(
        auth.verify(&HeaderMap::new(), body, secrets, Clock::at(now)),
        Err(AuthError::Missing("Authorization"))
    );
}

#[test]
fn hmac_of_the_body_in_bare_hex_sonarqube() {
    // SonarQube's own declaration, against a published signature of a real-shaped body.
    let auth = em_providers::by_name("sonarqube").expect("sonarqube").auth;
    let v = &vectors("sonarqube")[0];
    let (secret, body) = (s(&v["secret"]).as_bytes(), s(&v["body"]).as_bytes());
    let with = |sig: &str| headers(&[("X-Sonar-Webhook-HMAC-SHA256", sig)]);
    let secrets = [secret.to_vec()];
    assert_eq!(
        auth.verify(
            &with(s(&v["expected_header_value"])),
            body,
            &secrets,
            Clock::at(0)
        ),
        Ok(())
    );
    assert_eq!(
        auth.verify(
            &with(s(&v["negative_signature_hex"])),
            body,
            &secrets,
            Clock::at(0)
        ),
        Err(AuthError::Mismatch("X-Sonar-Webhook-HMAC-SHA256"))
    );
    assert_eq!(
        sign_one(&auth, secret, body, 0),
        vec![(
            "X-Sonar-Webhook-HMAC-SHA256".to_string(),
            s(&v["expected_header_value"]).to_string()
        )]
    );
    // The fixture is the vector's body, byte for byte.
    let fixture = std::fs::read(format!("{FIXTURES}/sonarqube/pull-request-ok-signed.json"))
        .expect("fixture");
    assert_eq!(fixture, body);
}
