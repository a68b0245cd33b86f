//! `em-agent digest --send` through SES and SNS on the AWS-compatible server: the email is read back from
//! the server (subject, its text and HTML parts, the chart) and the SNS message from a queue subscribed to
//! the topic.

use crate::common;

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

/// Quoted-printable decoded (soft line breaks dropped, `=XX` escapes read).
fn quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.replace("=\r\n", "").replace("=\n", "").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The leaf parts of a MIME message: each one's content type and its decoded body.
fn parts(raw: &str) -> Vec<(String, Vec<u8>)> {
    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        // Headers folded onto the next line start with whitespace: unfold first.
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
    let mut out = Vec::new();
    let unfolded = raw
        .replace("\r\n", "\n")
        .replace("\n\t", " ")
        .replace("\n ", " ");
    let (head, body) = unfolded.split_once("\n\n").unwrap_or((&unfolded, ""));
    let content_type = header(head, "Content-Type")
        .unwrap_or("text/plain")
        .to_string();
    if let Some(b) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    {
        let b = b.trim_matches('"');
        for part in body.split(&format!("--{b}")).skip(1) {
            if part.starts_with("--") {
                break;
            }
            out.extend(parts(part.trim_start_matches('\n')));
        }
        return out;
    }
    let encoding = header(head, "Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .to_lowercase();
    let decoded = match encoding.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(body.split_whitespace().collect::<String>())
            .expect("base64 part"),
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    out.push((kind, decoded));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_go_out_by_ses_and_sns() {
    let sdk = common::aws::sdk().await;
    let tag = common::aws::unique_name("digest");
    let from = common::aws::verified_sender(&sdk, &tag).await;
    let to = format!("web-{tag}@acme.test");
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = sns
        .create_topic()
        .name(&tag)
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("topic ARN");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .create_queue()
        .queue_name(&tag)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue URL");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(common::aws::queue_arn(&sdk, &queue).await)
        .send()
        .await
        .expect("subscription");

    let run = common::send_web_digest(
        &["email", "sns"],
        vec![
            ("EM_AGENT_DIGEST_FROM".into(), from.clone()),
            ("EM_AGENT_DIGEST_WEB_EMAIL".into(), to.clone()),
            ("EM_AGENT_DIGEST_WEB_SNS".into(), topic.clone()),
        ],
    )
    .await;
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stderr),
        common::aws::server_log_hint()
    );

    // The email, as SES took it.
    let sent = common::aws::emails_from(&from)
        .await
        .into_iter()
        .next()
        .expect("the email was sent");
    assert!(sent["destinations"]
        .as_array()
        .is_some_and(|d| d.iter().any(|a| a == to.as_str())));
    let raw = sent["raw_data"].as_str().expect("raw message");
    assert!(
        raw.contains("Subject: =?utf-8?Q?Weekly_DORA_digest_=E2=80=94_team_web?="),
        "{raw}"
    );
    let parts = parts(raw);
    let kinds: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["text/plain", "text/html", "image/png"], "{raw}");
    let text = String::from_utf8_lossy(&parts[0].1);
    assert!(
        text.starts_with("Weekly DORA digest — team web\n2025-04-07 to 2025-04-14 (UTC)"),
        "{text}"
    );
    let html = String::from_utf8_lossy(&parts[1].1);
    assert!(
        html.contains("Weekly DORA digest — team web") && html.contains("src=\"cid:trend-chart\""),
        "{html}"
    );
    assert!(parts[2].1.starts_with(b"\x89PNG\r\n\x1a\n"), "the chart");
    assert!(raw.contains("Content-ID: <trend-chart>"), "{raw}");

    // The SNS message, through the subscribed queue.
    let got = common::aws::receive_messages(&sdk, &queue, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "one SNS message");
    let envelope: Value =
        serde_json::from_str(got[0].body.as_deref().unwrap_or_default()).expect("SNS envelope");
    assert_eq!(envelope["Subject"], "Weekly DORA digest - team web");
    let message = envelope["Message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Weekly DORA digest — team web\n"),
        "{message}"
    );
    assert!(
        message.contains("Deployments 0 · failed attempts 0 · rollbacks 0 · rework 0"),
        "{message}"
    );
}
