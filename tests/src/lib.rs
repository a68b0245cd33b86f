//! Integration tests of EM Agent live in `it/`: they drive the `em-agent` binary over real HTTP, the
//! Lambda handlers over the AWS-compatible server, and every adapter through one contract. What the
//! functions' own tests share with them is here.

/// Answers one API Gateway request through a function's router as the Lambda runtime does, the JSON body
/// coming back as text.
pub async fn invoke(
    app: &axum::Router,
    req: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    use tower::ServiceExt;
    let response = match app.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("a response body");
    let text = String::from_utf8(bytes.to_vec()).expect("a text body");
    lambda_http::Response::from_parts(parts, lambda_http::Body::Text(text))
}
