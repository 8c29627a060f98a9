//! The HTTP side: a page and a small JSON API on axum.
//!
//! - `GET /login/{token}`: an annotator's personal link; sets an HttpOnly, SameSite=Strict cookie
//!   and sends them to `/`. Every other route needs that cookie, on loopback too.
//! - `GET /`: the labelling page (static HTML, script and style; the annotator's CSRF token in a
//!   meta tag). Model output and data reach the page only as JSON put in place with `textContent`,
//!   and the Content-Security-Policy forbids inline script, so a response holding HTML shows as text.
//! - `GET /api/next`: the annotator's next item, responses in their shuffled order; `GET
//!   /api/guidelines`.
//! - `POST /api/label`: needs the `x-csrf-token` header and, when the browser sends one, a
//!   same-origin `Origin`; bodies are capped, posts are rate-limited per annotator. The label is
//!   fsynced into the journal before the answer leaves, so the next item only ever shows after its
//!   predecessor is on disk. An annotator only ever names their own items: the annotator is the
//!   cookie's, never a field of the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::studio::{constant_time_eq, Refused, Studio, StudioKind, Submission};

const COOKIE: &str = "rlhf_studio";
/// The largest request body taken.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Posts an annotator may make in a burst, and per second after it.
const BURST: f64 = 20.0;
const PER_SECOND: f64 = 10.0;

const PAGE: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/app.css");

struct App {
    studio: Mutex<Studio>,
    buckets: Mutex<HashMap<usize, (f64, Instant)>>,
}

/// The router serving `studio`.
pub fn router(studio: Studio) -> Router {
    let app = Arc::new(App { studio: Mutex::new(studio), buckets: Mutex::new(HashMap::new()) });
    Router::new()
        .route("/", get(page))
        .route("/login/{token}", get(login))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
        .route("/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/api/next", get(next))
        .route("/api/guidelines", get(guidelines))
        .route("/api/label", post(label))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A refused request: its status and a message for the page.
struct Denied(StatusCode, String);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn denied(status: StatusCode, message: impl Into<String>) -> Denied {
    Denied(status, message.into())
}

/// The annotator the request's cookie belongs to.
fn annotator(app: &App, headers: &HeaderMap) -> Result<usize, Denied> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='));
    token
        .and_then(|token| app.studio.lock().unwrap().annotator_by_token(token))
        .ok_or_else(|| denied(StatusCode::UNAUTHORIZED, "open your personal link (rlhf-studio printed it) to sign in"))
}

async fn login(State(app): State<Arc<App>>, Path(token): Path<String>) -> Result<Response, Denied> {
    if app.studio.lock().unwrap().annotator_by_token(&token).is_none() {
        return Err(denied(StatusCode::NOT_FOUND, "no such link"));
    }
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    Ok((StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, "/".to_string())]).into_response())
}

async fn page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let annotator = match annotator(&app, &headers) {
        Ok(annotator) => annotator,
        Err(_) => {
            let text = "Open the personal link rlhf-studio printed for you to sign in.";
            return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
                .into_response();
        }
    };
    let studio = app.studio.lock().unwrap();
    let who = &studio.spec.annotators[annotator];
    // Both are [a-z0-9_-] (names are checked at set-up, the token is hex): safe inside HTML.
    let mode = match studio.spec.kind {
        StudioKind::Ranking => "ranking",
        StudioKind::Study => "study",
    };
    let html = PAGE.replace("{{CSRF}}", &who.csrf).replace("{{NAME}}", &who.name).replace("{{MODE}}", mode);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn next(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Denied> {
    let annotator = annotator(&app, &headers)?;
    let studio = app.studio.lock().unwrap();
    let (labelled, assigned) = studio.progress(annotator);
    let progress = json!({ "labelled": labelled, "assigned": assigned });
    let Some(index) = studio.next_item(annotator) else {
        return Ok(Json(json!({ "done": true, "progress": progress })).into_response());
    };
    let item = &studio.items[index];
    let responses: Vec<&str> =
        studio.display_order(annotator, index).into_iter().map(|response| item.responses[response].as_str()).collect();
    let next =
        json!({ "done": false, "item": item.id, "prompt": item.prompt, "responses": responses, "progress": progress });
    Ok(Json(next).into_response())
}

async fn guidelines(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Denied> {
    annotator(&app, &headers)?;
    Ok(Json(json!({ "text": app.studio.lock().unwrap().guidelines })).into_response())
}

async fn label(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Json<Submission>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Denied> {
    let annotator = annotator(&app, &headers)?;
    check_csrf(&app, annotator, &headers)?;
    if !take_token(&app, annotator) {
        return Err(denied(StatusCode::TOO_MANY_REQUESTS, "too many labels at once; slow down"));
    }
    let Json(submission) = body.map_err(|rejection| denied(rejection.status(), rejection.body_text()))?;
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // The journal's fsync blocks this worker, not the runtime's others; the lock keeps labels in order.
    let recorded = tokio::task::block_in_place(|| app.studio.lock().unwrap().record(annotator, submission, time));
    match recorded {
        Ok(stored) => Ok(Json(json!({ "ok": true, "duplicate": !stored })).into_response()),
        Err(refused @ Refused::UnknownItem(_)) => Err(denied(StatusCode::NOT_FOUND, refused.to_string())),
        Err(refused @ Refused::NotYours(_)) => Err(denied(StatusCode::FORBIDDEN, refused.to_string())),
        Err(refused @ Refused::Invalid(_)) => Err(denied(StatusCode::UNPROCESSABLE_ENTITY, refused.to_string())),
        Err(Refused::Storage(e)) => {
            tracing::error!(error = %e, "could not journal a label");
            Err(denied(StatusCode::INTERNAL_SERVER_ERROR, "the label could not be saved; it was not recorded"))
        }
    }
}

fn check_csrf(app: &App, annotator: usize, headers: &HeaderMap) -> Result<(), Denied> {
    let expected = app.studio.lock().unwrap().spec.annotators[annotator].csrf.clone();
    let given = headers.get("x-csrf-token").map(HeaderValue::as_bytes).unwrap_or_default();
    if !constant_time_eq(given, expected.as_bytes()) {
        return Err(denied(StatusCode::FORBIDDEN, "missing or wrong x-csrf-token"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        if origin.to_str().ok() != Some(&format!("http://{host}"))
            && origin.to_str().ok() != Some(&format!("https://{host}"))
        {
            return Err(denied(StatusCode::FORBIDDEN, "cross-origin post refused"));
        }
    }
    Ok(())
}

/// A token bucket per annotator: whether this post may go ahead.
fn take_token(app: &App, annotator: usize) -> bool {
    let mut buckets = app.buckets.lock().unwrap();
    let now = Instant::now();
    let (tokens, last) = buckets.entry(annotator).or_insert((BURST, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * PER_SECOND).min(BURST);
    *last = now;
    if *tokens < 1.0 {
        return false;
    }
    *tokens -= 1.0;
    true
}
