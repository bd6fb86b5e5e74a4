//! The HTTP routes. Every page and action first finds the session from its
//! cookie (else: to the sign-in page), every change checks the form's CSRF
//! token against the session's, and every answer carries headers that keep
//! it out of frames, caches and referrers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;

use crate::cluster::{self, ClusterError};
use crate::html::{self, Frame};
use crate::session::{self, Session, Sessions};
use crate::{logsearch, pages};

pub struct AppState {
    pub sessions: Sessions,
    pub apiserver: http::Uri,
    /// DER certificates the API server's certificate must chain to.
    pub ca: Vec<Vec<u8>>,
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/", get(overview))
        .route("/ns/{ns}", get(workloads))
        .route("/ns/{ns}/pods/{name}", get(pod))
        .route("/ns/{ns}/pods/{name}/log", get(pod_log))
        .route("/ns/{ns}/pods/{name}/delete", post(delete_pod))
        .route("/ns/{ns}/deployments/{name}/scale", post(scale))
        .route("/ns/{ns}/deployments/{name}/restart", post(restart))
        .route("/nodes/{name}/{action}", post(cordon))
        .route("/yaml/{kind}/{ns}/{name}", get(yaml).post(apply))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(state)
}

async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "strict-transport-security", "max-age=31536000");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    r
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/app.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
}

fn html_page(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn cookie_of<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie_value(h, name))
}

/// The signed-in session: (id, session, message for this page).
struct Signed {
    id: String,
    session: Session,
    flash: Option<(bool, String)>,
}

/// Why a request goes no further.
enum Denied {
    /// No live session: to the sign-in page.
    SignIn,
    /// A change without the session's CSRF token.
    Csrf,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::SignIn => Redirect::to("/login").into_response(),
            Denied::Csrf => (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response(),
        }
    }
}

fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Signed, Denied> {
    let id = cookie_of(headers, session::COOKIE).unwrap_or("");
    match state.sessions.get(id) {
        Some((session, flash)) => Ok(Signed {
            id: id.to_string(),
            session,
            flash,
        }),
        None => Err(Denied::SignIn),
    }
}

/// A change: signed in and carrying the session's CSRF token.
fn change(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Signed, Denied> {
    let s = signed_in(state, headers)?;
    if !session::same(csrf, &s.session.csrf) {
        return Err(Denied::Csrf);
    }
    Ok(s)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn frame_page(s: &Signed, title: &str, namespace: Option<&str>, body: &str) -> Response {
    let namespaces = match cluster::namespaces(&s.session.client).await {
        Ok(n) => n,
        // May not list namespaces: offer the one in view, else default.
        Err(_) => vec![namespace.unwrap_or("default").to_string()],
    };
    let frame = Frame {
        title,
        user: Some((&s.session.user, &s.session.csrf)),
        namespaces: &namespaces,
        namespace,
        flash: s.flash.clone(),
    };
    html_page(html::page(&frame, body))
}

async fn login_form() -> Response {
    login_page(None)
}

fn login_page(error: Option<&str>) -> Response {
    let csrf = session::random_token();
    let frame = Frame {
        title: "Sign in",
        user: None,
        namespaces: &[],
        namespace: None,
        flash: None,
    };
    let mut r = html_page(html::page(&frame, &pages::login(&csrf, error)));
    if let Ok(v) = HeaderValue::from_str(&session::cookie(session::LOGIN_COOKIE, &csrf)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    if error.is_some() {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    r
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    token: String,
}

/// Who a token says it is: a JWT's `sub`, else "token user". Shown only.
pub fn token_user(token: &str) -> String {
    let claims = token.split('.').nth(1).and_then(|p| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .ok()
    });
    claims
        .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok())
        .and_then(|v| v["sub"].as_str().map(str::to_string))
        .unwrap_or_else(|| "token user".into())
}

async fn login(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let expected = cookie_of(&headers, session::LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !session::same(&f.csrf, expected) {
        return login_page(Some("The sign-in form expired; try again."));
    }
    let token = f.token.trim().to_string();
    if token.is_empty() {
        return login_page(Some("Paste a token."));
    }
    let mut config = kube::Config::new(state.apiserver.clone());
    config.root_cert = Some(state.ca.clone());
    config.read_timeout = Some(Duration::from_secs(30));
    config.auth_info.token = Some(SecretString::from(token.clone()));
    let client = match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) => return login_page(Some(&format!("Cannot make a client: {e}"))),
    };
    match cluster::check_token(&client).await {
        Ok(()) => {}
        Err(e) if e.is_unauthorized() => {
            return login_page(Some(
                "The API server did not accept this token (Unauthorized).",
            ))
        }
        Err(e) => return login_page(Some(&e.to_string())),
    }
    let user = token_user(&token);
    tracing::info!(user = %user, "signed in");
    let id = state.sessions.create(client, user);
    let mut r = Redirect::to("/").into_response();
    for c in [
        session::cookie(session::COOKIE, &id),
        session::cookie(session::LOGIN_COOKIE, ""),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match change(&state, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    state.sessions.remove(&s.id);
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::cookie(session::COOKIE, "")) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn overview(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let s = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let o = cluster::overview(&s.session.client).await;
    let body = pages::overview(&o, &s.session.csrf, now());
    frame_page(&s, "Overview", None, &body).await
}

async fn workloads(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(ns): Path<String>,
) -> Response {
    let s = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let w = cluster::workloads(&s.session.client, &ns).await;
    let body = pages::workloads(&ns, &w, &s.session.csrf, now());
    frame_page(&s, &format!("Workloads in {ns}"), Some(&ns), &body).await
}

#[derive(Deserialize)]
struct ContainerQuery {
    container: Option<String>,
    /// The Pod page's log search: its text and time range.
    q: Option<String>,
    since: Option<String>,
}

const LOG_LINES: i64 = 200;

async fn pod(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<ContainerQuery>,
) -> Response {
    let s = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let client = &s.session.client;
    let p = cluster::pod(client, &ns, &name, now()).await;
    let container = q.container.filter(|c| !c.is_empty()).or_else(|| {
        p.pod
            .as_ref()
            .ok()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
    });
    let search = logsearch::Search {
        text: q.q.unwrap_or_default(),
        since: q.since.filter(|s| !s.is_empty()),
    };
    let log = async {
        match &container {
            Some(c) => cluster::pod_log(client, &ns, &name, Some(c.clone()), LOG_LINES).await,
            None => Err(ClusterError::BadInput("the Pod has no containers".into())),
        }
    };
    let found = logsearch::search(client, &ns, &name, container.as_deref(), &search);
    let (log, found) = tokio::join!(log, found);
    let logs = pages::PodLogs {
        container: container.as_deref().unwrap_or(""),
        tail: &log,
        search: &search,
        found: &found,
    };
    let body = pages::pod(&ns, &name, &p, &logs, &s.session.csrf, now());
    frame_page(&s, &format!("Pod {name}"), Some(&ns), &body).await
}

async fn pod_log(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<ContainerQuery>,
) -> Response {
    let s = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(_) => return (StatusCode::UNAUTHORIZED, "signed out").into_response(),
    };
    match cluster::pod_log(&s.session.client, &ns, &name, q.container, LOG_LINES).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Runs a change, leaves its outcome for the next page, and goes there.
async fn finish(
    state: &AppState,
    s: &Signed,
    done: cluster::Result<String>,
    to: String,
) -> Response {
    match done {
        Ok(message) => {
            tracing::info!(user = %s.session.user, "{message}");
            state.sessions.flash(&s.id, true, message);
        }
        Err(e) => {
            tracing::info!(user = %s.session.user, "refused: {e}");
            state.sessions.flash(&s.id, false, e.to_string());
        }
    }
    Redirect::to(&to).into_response()
}

fn ns_url(ns: &str) -> String {
    format!("/ns/{}", html::seg(ns))
}

#[derive(Deserialize)]
struct ScaleForm {
    csrf: String,
    replicas: i32,
}

async fn scale(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Form(f): Form<ScaleForm>,
) -> Response {
    let s = match change(&state, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let done = cluster::scale(&s.session.client, &ns, &name, f.replicas)
        .await
        .map(|()| format!("Scaled Deployment {name} to {} replicas.", f.replicas));
    finish(&state, &s, done, ns_url(&ns)).await
}

async fn restart(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match change(&state, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let done = cluster::restart(&s.session.client, &ns, &name, &stamp)
        .await
        .map(|()| format!("Restarting Deployment {name}."));
    finish(&state, &s, done, ns_url(&ns)).await
}

async fn delete_pod(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match change(&state, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let done = cluster::delete_pod(&s.session.client, &ns, &name)
        .await
        .map(|()| format!("Deleted Pod {name}."));
    finish(&state, &s, done, ns_url(&ns)).await
}

async fn cordon(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match change(&state, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let unschedulable = match action.as_str() {
        "cordon" => true,
        "uncordon" => false,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let done = cluster::cordon(&s.session.client, &name, unschedulable)
        .await
        .map(|()| {
            format!(
                "{} node {name}.",
                if unschedulable {
                    "Cordoned"
                } else {
                    "Uncordoned"
                }
            )
        });
    finish(&state, &s, done, "/".into()).await
}

async fn yaml(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((kind, ns, name)): Path<(String, String, String)>,
) -> Response {
    let s = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let body = match cluster::yaml(&s.session.client, &kind, &ns, &name).await {
        Ok(text) => pages::yaml(&kind, &ns, &name, &text, None, &s.session.csrf),
        Err(e) => format!(r#"<p class="error">{}</p>"#, html::esc(&e.to_string())),
    };
    let namespace = (ns != "_").then_some(ns.as_str());
    frame_page(&s, &format!("{kind}/{name}"), namespace, &body).await
}

#[derive(Deserialize)]
struct ApplyForm {
    csrf: String,
    yaml: String,
    mode: String,
}

async fn apply(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((kind, ns, name)): Path<(String, String, String)>,
    Form(f): Form<ApplyForm>,
) -> Response {
    let s = match change(&state, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let dry_run = f.mode != "apply";
    let outcome = cluster::apply(&s.session.client, &kind, &ns, &name, &f.yaml, dry_run).await;
    let (flash, result) = match &outcome {
        Ok(text) if dry_run => (
            (true, "The dry run passed; nothing was changed.".to_string()),
            Some(text.as_str()),
        ),
        Ok(text) => (
            (true, format!("Applied {kind}/{name}.")),
            Some(text.as_str()),
        ),
        Err(e) => ((false, e.to_string()), None),
    };
    let signed = Signed {
        flash: Some(flash),
        ..s
    };
    let body = pages::yaml(&kind, &ns, &name, &f.yaml, result, &signed.session.csrf);
    let namespace = (ns != "_").then_some(ns.as_str());
    frame_page(&signed, &format!("{kind}/{name}"), namespace, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_comes_from_a_jwt_subject_only() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"system:serviceaccount:default:viewer"}"#);
        assert_eq!(
            token_user(&format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig")),
            "system:serviceaccount:default:viewer"
        );
        assert_eq!(token_user("0123456789abcdef"), "token user");
    }
}
