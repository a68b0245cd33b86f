//! A page opened in headless Chromium (Debian's `chromium`) through ChromeDriver's WebDriver protocol over
//! HTTP: what a person sees (the text as rendered, a screenshot), not the HTML as written.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// What the browser rendered.
pub struct Rendered {
    /// The page's text as laid out (`innerText` of the body, per WebDriver's "Get Element Text").
    pub text: String,
    /// A screenshot of the window, PNG.
    pub png: Vec<u8>,
    /// The natural width of each image of the page: 0 for one that did not load.
    pub image_widths: Vec<u64>,
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens `page` (a local file) in a headless Chromium `width` × `height` and reads it back.
pub async fn render(page: &Path, width: u32, height: u32) -> Rendered {
    let chromium = std::env::var("EM_AGENT_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    let driver = std::env::var("EM_AGENT_TEST_CHROMEDRIVER").unwrap_or("chromedriver".into());
    let port = crate::common::free_port();
    let _driver = Driver(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{driver} did not start ({e}): the browser tests need Debian's chromium and \
                     chromium-driver (scripts/test.sh installs them)"
                )
            }),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = crate::common::client();
    // ChromeDriver answers /status once it listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{base}/status")).send().await;
        if let Ok(r) = ready {
            let status: Value = r.json().await.unwrap_or_default();
            if status["value"]["ready"] == true {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = tempfile::tempdir().expect("profile dir");
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let mut req = http.request(method, &url);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let answer: Value = req
                .send()
                .await
                .expect("chromedriver answers")
                .json()
                .await
                .expect("JSON");
            assert!(
                answer["value"]["error"].is_null(),
                "{url}: {}",
                answer["value"]
            );
            answer["value"].clone()
        }
    };
    // The flags a root, offline machine needs: no sandbox, no GPU, no calls home.
    let session = call(
        reqwest::Method::POST,
        "/session".into(),
        Some(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}})),
    )
    .await;
    let id = session["sessionId"]
        .as_str()
        .expect("a session")
        .to_string();
    let url = format!(
        "file://{}",
        page.canonicalize().expect("page path").display()
    );
    call(
        reqwest::Method::POST,
        format!("/session/{id}/url"),
        Some(json!({ "url": url })),
    )
    .await;
    let body = call(
        reqwest::Method::POST,
        format!("/session/{id}/element"),
        Some(json!({"using": "css selector", "value": "body"})),
    )
    .await;
    let element = body
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .expect("the body element")
        .to_string();
    let text = call(
        reqwest::Method::GET,
        format!("/session/{id}/element/{element}/text"),
        None,
    )
    .await;
    let image_widths = call(
        reqwest::Method::POST,
        format!("/session/{id}/execute/sync"),
        Some(json!({
            "script": "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)",
            "args": [],
        })),
    )
    .await;
    let shot = call(
        reqwest::Method::GET,
        format!("/session/{id}/screenshot"),
        None,
    )
    .await;
    call(reqwest::Method::DELETE, format!("/session/{id}"), None).await;
    Rendered {
        text: text.as_str().unwrap_or_default().to_string(),
        png: base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap_or_default())
            .expect("a base64 screenshot"),
        image_widths: image_widths
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
    }
}

/// How many distinct colours a PNG has, and the share of its pixels that are not (near) white.
pub fn ink(png: &[u8]) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    let inked = pixels
        .iter()
        .filter(|p| p.iter().take(3).any(|&c| c < 230))
        .count();
    (colours.len(), inked as f64 / pixels.len().max(1) as f64)
}
