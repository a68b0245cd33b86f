//! The one shape of an HTTP answer, shared by the local server (axum) and the Lambda functions
//! (`lambda_http`): both take an `http::Response` and turn its `String` body into their own body type.

/// A JSON answer with the given status; an impossible status becomes a 500 rather than a panic.
pub fn json_response(status: u16, body: &serde_json::Value) -> http::Response<String> {
    let mut r = http::Response::new(body.to_string());
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The 404 of every front door: the routes it does answer, as a sentence and as data (`routes`), each
/// `METHOD path`.
pub fn not_found(routes: &[String]) -> http::Response<String> {
    json_response(
        404,
        &serde_json::json!({
            "error": format!("no such route: {}", routes.join(", ")),
            "routes": routes,
        }),
    )
}
