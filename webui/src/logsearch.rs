//! A Pod's past logs from the cluster's log store (the logging add-on,
//! logstore/README.md), reached through the API server's service proxy
//! (`services/proxy` on kube-system/cairn-logstore; RBAC decides) with the
//! signed-in user's token, like the Prometheus charts in [`crate::usage`].

use serde_json::Value;

use crate::cluster::{ClusterError, Result};
use crate::html::seg;

/// The store's query API, through the API server's service proxy.
const QUERY: &str =
    "/api/v1/namespaces/kube-system/services/cairn-logstore:http/proxy/api/v1/query";
/// Records shown on a page.
pub const LIMIT: u32 = 100;
/// How long the store may take to answer before the page goes without it.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the user searches for in one Pod's logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// Full text in the store's query syntax ('' for every line).
    pub text: String,
    /// Only the last of these (`1h`, `30m`); the store checks it.
    pub since: Option<String>,
}

/// One line found.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: String,
    pub container: String,
    pub stream: String,
    pub message: String,
}

/// The query path of `search` in Pod `ns`/`pod` (one container if given).
pub fn path(ns: &str, pod: &str, container: Option<&str>, search: &Search) -> String {
    let mut p = format!(
        "{QUERY}?namespace={}&pod={}&q={}&limit={LIMIT}",
        seg(ns),
        seg(pod),
        seg(&search.text)
    );
    if let Some(c) = container.filter(|c| !c.is_empty()) {
        p += &format!("&container={}", seg(c));
    }
    if let Some(s) = search.since.as_deref().filter(|s| !s.is_empty()) {
        p += &format!("&since={}", seg(s));
    }
    p
}

/// The records of the store's answer, or why there are none: the store's
/// own refusal (a query it cannot parse, 400) is the user's to fix; the
/// API server's (RBAC, no such Service) is passed on as it said it.
pub fn answer(status: u16, body: &[u8]) -> Result<Vec<Record>> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        if let Some(e) = v["error"].as_str() {
            return Err(ClusterError::BadInput(format!("the log store: {e}")));
        }
        if let Some(m) = v["message"].as_str().filter(|m| !m.is_empty()) {
            return Err(ClusterError::Refused(m.to_string()));
        }
        let text = String::from_utf8_lossy(body);
        return Err(ClusterError::Unreachable(format!(
            "the log store answered {status}: {}",
            text.trim()
        )));
    }
    let records = v["records"]
        .as_array()
        .ok_or_else(|| ClusterError::Unreachable("the log store's answer has no records".into()))?;
    let field = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    Ok(records
        .iter()
        .map(|r| Record {
            time: field(r, "time"),
            container: field(r, "container"),
            stream: field(r, "stream"),
            message: field(r, "message"),
        })
        .collect())
}

/// The newest lines of Pod `ns`/`pod` that match `search`, newest first.
pub async fn search(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    search: &Search,
) -> Result<Vec<Record>> {
    let request = http::Request::get(path(ns, pod, container, search))
        .body(kube::client::Body::empty())
        .map_err(|e| ClusterError::BadInput(e.to_string()))?;
    let ask = async {
        let response = client
            .send(request)
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        answer(status, &body)
    };
    match tokio::time::timeout(TIMEOUT, ask).await {
        Ok(r) => r,
        Err(_) => Err(ClusterError::Unreachable(format!(
            "the log store gave no answer within {} s",
            TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_names_the_pod_and_encodes_the_search() {
        let s = Search {
            text: "\"connection refused\" OR x&y".into(),
            since: Some("1h".into()),
        };
        assert_eq!(
            path("default", "web-1", Some("web"), &s),
            "/api/v1/namespaces/kube-system/services/cairn-logstore:http/proxy/api/v1/query\
             ?namespace=default&pod=web-1&q=%22connection%20refused%22%20OR%20x%26y&limit=100\
             &container=web&since=1h"
        );
        let every = path("default", "web-1", None, &Search::default());
        assert!(
            every.ends_with("?namespace=default&pod=web-1&q=&limit=100"),
            "{every}"
        );
    }

    #[test]
    fn records_and_refusals() {
        let ok = br#"{"records":[{"time":"2026-12-07T03:00:00Z","node":"cp-1","namespace":"default",
            "pod":"p","container":"c","stream":"stdout","message":"hello 1"}],"next_cursor":null,"last_seq":4}"#;
        assert_eq!(
            answer(200, ok).unwrap(),
            vec![Record {
                time: "2026-12-07T03:00:00Z".into(),
                container: "c".into(),
                stream: "stdout".into(),
                message: "hello 1".into(),
            }]
        );
        let bad = answer(400, br#"{"error":"q: Syntax Error: (unclosed"}"#).unwrap_err();
        assert!(
            matches!(&bad, ClusterError::BadInput(m) if m == "the log store: q: Syntax Error: (unclosed"),
            "{bad:?}"
        );
        let rbac = br#"{"kind":"Status","status":"Failure","message":"services \"cairn-logstore:http\" is forbidden: User \"v\" cannot get resource \"services/proxy\"","code":403}"#;
        assert!(
            matches!(answer(403, rbac).unwrap_err(), ClusterError::Refused(m) if m.contains("forbidden"))
        );
        let gone = answer(503, b"no endpoints available").unwrap_err();
        assert!(
            gone.to_string().contains("503: no endpoints available"),
            "{gone}"
        );
    }
}
