//! `cairnctl logs --cluster '<query>'`: searches the cluster's log store
//! (the logging add-on, logstore/README.md) and, with `-f`, follows its live
//! tail.
//!
//! The store is reached through the Kubernetes API server's service proxy
//! (`/api/v1/namespaces/kube-system/services/cairn-logstore:http/proxy/...`)
//! with the admin kubeconfig fetched from the node, as `cairnctl kubeconfig`
//! gets it, or with `--kubeconfig`. The newest `--tail` matching records are
//! printed oldest first (like `tail`); `-f` then prints each new match as the
//! store commits it, from exactly where the page ended.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::global::GlobalArgs;
use config::constants::logging::{NAMESPACE, SERVICE};

/// Records printed before following, without `--tail`.
pub const DEFAULT_TAIL: u32 = 100;
/// Most the store returns in one page.
const MAX_PAGE: u32 = 5000;

/// The search flags (only with `--cluster`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SearchArgs {
    /// Only records of the last DURATION (e.g. 30m, 1h, 2d).
    #[arg(long, value_name = "DURATION", requires = "cluster", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Only this namespace.
    #[arg(long, requires = "cluster")]
    pub namespace: Option<String>,
    /// Only this pod.
    #[arg(long, requires = "cluster")]
    pub pod: Option<String>,
    /// Only this container.
    #[arg(long, requires = "cluster")]
    pub container: Option<String>,
    /// Only records from this node (its Kubernetes node name).
    #[arg(long, value_name = "NODE", requires = "cluster")]
    pub node_name: Option<String>,
    /// Only this machined service (kubelet, etcd, ...; the nodes' own logs).
    #[arg(long, requires = "cluster")]
    pub service: Option<String>,
    /// Only stdout or stderr.
    #[arg(long, requires = "cluster", value_parser = ["stdout", "stderr"])]
    pub stream: Option<String>,
    /// Print records as JSON, one object per line.
    #[arg(short = 'o', long, requires = "cluster", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// A kubeconfig to use instead of fetching the admin one from the node.
    #[arg(long, requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns: time, node, source, message.
    #[default]
    Table,
    /// The store's records, one JSON object per line.
    Json,
}

/// The query-string pairs of a search.
pub fn params(query: &str, s: &SearchArgs, limit: u32) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("q", query.to_string()),
        ("limit", limit.min(MAX_PAGE).to_string()),
    ];
    if let Some(d) = s.since {
        p.push(("since", format!("{}s", d.as_secs().max(1))));
    }
    for (k, v) in [
        ("namespace", &s.namespace),
        ("pod", &s.pod),
        ("container", &s.container),
        ("node", &s.node_name),
        ("service", &s.service),
        ("stream", &s.stream),
    ] {
        if let Some(v) = v {
            p.push((k, v.clone()));
        }
    }
    p
}

/// The API server path of the store's `endpoint` with `params`.
pub fn proxy_path(endpoint: &str, params: &[(&str, String)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!(
        "/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}:http/proxy/api/v1/{endpoint}?{query}"
    )
}

/// What a failed request means for the user.
pub fn explain(status: u16, body: &str) -> String {
    let json: Value = serde_json::from_str(body).unwrap_or_default();
    // The store's own errors: {"error": "..."}.
    if let Some(e) = json["error"].as_str() {
        return match status {
            400 => format!("the log store cannot run this search: {e}"),
            _ => format!("the log store answered {status}: {e}"),
        };
    }
    // The API server's: a Status.
    let message = json["message"].as_str().unwrap_or(body.trim());
    match status {
        404 if message.contains("not found") => format!(
            "the log store's Service {NAMESPACE}/{SERVICE} does not exist: is the logging add-on on (cluster.addons.logging.enabled)? ({message})"
        ),
        503 => format!("the log store is not ready yet: {message}"),
        401 | 403 => format!("the API server refused the request ({status}): {message}; an admin kubeconfig is needed"),
        _ => format!("the API server answered {status}: {message}"),
    }
}

async fn get(
    cluster: &crate::commands::kubeconfig::Cluster,
    path: &str,
) -> anyhow::Result<http::Response<kube::client::Body>> {
    let req = http::Request::get(path)
        .body(kube::client::Body::from(Vec::new()))
        .context("building the request")?;
    let res = cluster
        .client
        .send(req)
        .await
        .map_err(|e| cluster.unreachable(e))?;
    if !res.status().is_success() {
        let status = res.status().as_u16();
        let body = res.into_body().collect_bytes().await.unwrap_or_default();
        anyhow::bail!(explain(status, &String::from_utf8_lossy(&body)));
    }
    Ok(res)
}

/// One record's table cells: time, node, source, message.
pub fn cells(r: &Value) -> [String; 4] {
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    let time = short_time(&s("time"));
    let source = if r["pod"].is_string() {
        format!("{}/{}/{}", s("namespace"), s("pod"), s("container"))
    } else if r["service"].is_string() {
        format!("service/{}", s("service"))
    } else {
        "-".to_string()
    };
    let mut message = s("message");
    if r["stream"] == "stderr" {
        message = format!("[stderr] {message}");
    }
    [time, s("node"), source, message.trim_end().to_string()]
}

/// `2026-12-05T07:15:04.123456789Z` as `2026-12-05 07:15:04.123`.
pub fn short_time(t: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
    );
    time::OffsetDateTime::parse(t, &Rfc3339)
        .ok()
        .and_then(|d| d.to_offset(time::UtcOffset::UTC).format(&fmt).ok())
        .unwrap_or_else(|| t.to_string())
}

/// Prints rows aligned on the widest cell seen so far (a followed stream
/// cannot know its widths ahead; the columns only ever grow).
#[derive(Debug, Default)]
pub struct Columns {
    widths: [usize; 3],
}

impl Columns {
    pub fn fit(&mut self, rows: &[[String; 4]]) {
        for r in rows {
            for (w, c) in self.widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
    }

    pub fn line(&mut self, r: &[String; 4]) -> String {
        self.fit(std::slice::from_ref(r));
        let pad =
            |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
        format!(
            "{}  {}  {}  {}",
            pad(&r[0], self.widths[0]),
            pad(&r[1], self.widths[1]),
            pad(&r[2], self.widths[2]),
            r[3]
        )
    }
}

fn print_record(
    out: &mut impl std::io::Write,
    r: &Value,
    output: Output,
    cols: &mut Columns,
) -> std::io::Result<()> {
    match output {
        Output::Json => writeln!(out, "{r}"),
        Output::Table => writeln!(out, "{}", cols.line(&cells(r))),
    }
}

pub async fn run(
    query: &str,
    search: &SearchArgs,
    tail: Option<u32>,
    follow: bool,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let cluster = crate::commands::kubeconfig::client(search.kubeconfig.as_deref(), global).await?;
    let limit = tail.unwrap_or(DEFAULT_TAIL).clamp(1, MAX_PAGE);
    let res = get(
        &cluster,
        &proxy_path("query", &params(query, search, limit)),
    )
    .await?;
    let body = res
        .into_body()
        .collect_bytes()
        .await
        .context("reading the log store's answer")?;
    let page: Value =
        serde_json::from_slice(&body).context("the log store's answer is not JSON")?;
    let mut records: Vec<Value> = page["records"].as_array().cloned().unwrap_or_default();
    records.reverse();
    let mut cols = Columns::default();
    cols.fit(&records.iter().map(cells).collect::<Vec<_>>());
    let mut out = std::io::stdout().lock();
    for r in &records {
        print_record(&mut out, r, search.output, &mut cols)?;
    }
    out.flush()?;
    drop(out);
    if !follow {
        if records.is_empty() && search.output == Output::Table {
            eprintln!("no matching records");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // From where the page ended: nothing twice, nothing missed.
    let last_seq = page["last_seq"].as_u64().unwrap_or(0);
    let mut p = params(query, search, limit);
    p.retain(|(k, _)| *k != "limit" && *k != "since");
    p.push(("after_seq", last_seq.to_string()));
    let res = get(&cluster, &proxy_path("tail", &p)).await?;
    let mut body = res.into_body();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let Some(frame) = frame else {
            anyhow::bail!("the log store ended the live tail (restarted?)");
        };
        let frame = frame.context("reading the live tail")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut out = std::io::stdout().lock();
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Ok(r) = serde_json::from_slice::<Value>(&line) {
                print_record(&mut out, &r, search.output, &mut cols)?;
            }
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn searches_become_proxy_paths() {
        let s = SearchArgs {
            since: Some(Duration::from_secs(3600)),
            namespace: Some("kube-system".into()),
            pod: Some("cairn-dns-1".into()),
            ..SearchArgs::default()
        };
        let path = proxy_path("query", &params("error AND \"timed out\"", &s, 100));
        assert_eq!(
            path,
            "/api/v1/namespaces/kube-system/services/cairn-logstore:http/proxy/api/v1/query\
             ?q=error+AND+%22timed+out%22&limit=100&since=3600s&namespace=kube-system&pod=cairn-dns-1"
        );
        assert!(params("", &SearchArgs::default(), 99_999).contains(&("limit", "5000".into())));
    }

    #[test]
    fn errors_are_explained() {
        let e = explain(400, r#"{"error":"q: Syntax Error: (x"}"#);
        assert_eq!(
            e,
            "the log store cannot run this search: q: Syntax Error: (x"
        );
        let e = explain(
            404,
            r#"{"kind":"Status","message":"services \"cairn-logstore\" not found","code":404}"#,
        );
        assert!(e.contains("logging add-on"), "{e}");
        let e = explain(
            503,
            r#"{"kind":"Status","message":"no endpoints available for service \"cairn-logstore:http\""}"#,
        );
        assert!(e.starts_with("the log store is not ready"), "{e}");
        assert!(explain(403, "forbidden").contains("admin kubeconfig"));
    }

    #[test]
    fn records_print_aligned_with_their_source() {
        let pod = json!({"time": "2026-12-05T07:15:04.123456789Z", "node": "cp1", "namespace": "default",
                         "pod": "web", "container": "app", "stream": "stdout", "message": "hello\n"});
        let svc = json!({"time": "2026-12-05T07:15:05Z", "node": "worker-1", "service": "kubelet",
                         "message": "started"});
        let err = json!({"time": "x", "node": "cp1", "namespace": "n", "pod": "p", "container": "c",
                         "stream": "stderr", "message": "bad"});
        assert_eq!(cells(&pod)[0], "2026-12-05 07:15:04.123");
        assert_eq!(cells(&svc)[2], "service/kubelet");
        assert_eq!(cells(&err)[3], "[stderr] bad");
        let mut cols = Columns::default();
        let rows: Vec<_> = [&pod, &svc].iter().map(|r| cells(r)).collect();
        cols.fit(&rows);
        let a = cols.line(&rows[0]);
        let b = cols.line(&rows[1]);
        assert_eq!(
            a,
            "2026-12-05 07:15:04.123  cp1       default/web/app  hello"
        );
        assert_eq!(
            b,
            "2026-12-05 07:15:05.000  worker-1  service/kubelet  started"
        );
        // A wider cell later widens the column from then on.
        let wide = cols.line(&cells(
            &json!({"time": "t", "node": "a-much-longer-node", "service": "s", "message": "m"}),
        ));
        assert!(
            wide.starts_with("t                        a-much-longer-node  service/s"),
            "{wide:?}"
        );
    }
}
