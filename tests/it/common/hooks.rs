//! A webhook receiver on the loopback (Slack, Teams): each hook answers as scripted (200 once its script
//! runs out) and keeps what it got.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

#[derive(Default)]
pub struct Receiver {
    script: Mutex<HashMap<String, VecDeque<u16>>>,
    got: Mutex<Vec<(String, Value)>>,
}

impl Receiver {
    /// What `hook` answers its next requests with, in order.
    pub fn answer(&self, hook: &str, statuses: &[u16]) {
        if let Ok(mut s) = self.script.lock() {
            s.insert(hook.to_string(), statuses.iter().copied().collect());
        }
    }

    /// The bodies `hook` got, in order.
    pub fn hits(&self, hook: &str) -> Vec<Value> {
        self.got
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|(h, _)| h == hook)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> StatusCode {
    if let Ok(mut g) = r.got.lock() {
        g.push((name.clone(), body));
    }
    let status = r
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.get_mut(&name).and_then(|q| q.pop_front()))
        .unwrap_or(200);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// A receiver on a free loopback port, and its base URL: hook `name` is at `<base>/<name>`.
pub async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/hooks/{name}", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (r, format!("http://{addr}/hooks"))
}
