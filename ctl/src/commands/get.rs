//! `cairnctl get <type> [id] [-o table|yaml|json] [-w]`: typed resources
//! from machined's store.

use std::io::Write;
use std::process::ExitCode;

use api::machine::resource_event::Kind;
use api::machine::{Resource, ResourceGetRequest, ResourceListRequest, ResourceWatchRequest};
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, NodeClient, Session};

/// Resource types and the other names they answer to.
pub const TYPES: &[(&str, &[&str])] = &[
    ("machineconfig", &["mc", "machineconfigs", "config"]),
    ("machinestatus", &["ms", "status"]),
    ("services", &["service", "svc"]),
    ("addresses", &["address", "addr", "addrs"]),
    ("links", &["link"]),
    ("routes", &["route"]),
    ("resolvers", &["resolver", "dns"]),
    ("hostname", &["hostnames"]),
    ("timeservers", &["timeserver", "ntp"]),
    ("timestatus", &["ts"]),
    ("mounts", &["mount"]),
    ("disks", &["disk"]),
    ("staticpods", &["staticpod", "sp"]),
    ("events", &["event", "ev"]),
    ("meta", &[]),
];

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 get services
  cairnctl -n 10.5.0.2 get mc -o yaml
  cairnctl -n 10.5.0.2 get addresses -o json
  cairnctl -n 10.5.0.2 get links eth0 -o yaml
  cairnctl -n 10.5.0.2 get routes -w

Types (and aliases): machineconfig (mc), machinestatus (ms), services (svc),
addresses (addr), links, routes, resolvers, hostname, timeservers, timestatus,
mounts, disks,
staticpods (sp), events (ev), meta (the META partition: upgrade state, boot
counts, the last failed boot). Other names are sent as given. Secrets in the machine config are shown only to admins.
With -w the current resources are printed first, then every change.")]
pub struct Args {
    /// The resource type.
    #[arg(value_name = "TYPE")]
    pub resource_type: String,
    /// One resource by id; all of the type when omitted.
    pub id: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Keep watching and print every change.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// The namespace (default: the node's default namespace for the type).
    #[arg(long, default_value = "")]
    pub namespace: String,
}

/// The canonical type for `name` (an alias or the type itself); other
/// names pass through unchanged.
pub fn canonical_type(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    TYPES
        .iter()
        .find(|(t, aliases)| *t == lower || aliases.contains(&lower.as_str()))
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| name.to_string())
}

/// A resource for `-o json|yaml`: its node, metadata, and spec (parsed
/// from YAML when it is YAML, else the text).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ResourceRecord {
    pub node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'static str>,
    pub metadata: Metadata,
    pub spec: serde_yaml::Value,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Metadata {
    pub namespace: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub updated: String,
}

impl ResourceRecord {
    pub fn new(node: &str, r: &Resource, event: Option<&'static str>) -> Self {
        let m = r.metadata.clone().unwrap_or_default();
        let spec = match serde_yaml::from_str::<serde_yaml::Value>(&r.spec) {
            Ok(v) => v,
            Err(_) => serde_yaml::Value::String(r.spec.clone()),
        };
        ResourceRecord {
            node: node.to_string(),
            event,
            metadata: Metadata {
                namespace: m.namespace,
                resource_type: m.r#type,
                id: m.id,
                version: m.version,
                created: output::timestamp(m.created.as_ref()),
                updated: output::timestamp(m.updated.as_ref()),
            },
            spec,
        }
    }

    fn cells(&self) -> Vec<String> {
        let m = &self.metadata;
        vec![
            self.node.clone(),
            m.namespace.clone(),
            m.resource_type.clone(),
            m.id.clone(),
            m.version.to_string(),
        ]
    }
}

const HEADER: [&str; 5] = ["NODE", "NAMESPACE", "TYPE", "ID", "VERSION"];

/// META's keys and values (`get meta`); a long value shows its first
/// line and how many more there are (`-o yaml` shows all of it).
pub fn meta_table(records: &[ResourceRecord]) -> Table {
    let mut t = Table::new(["NODE", "KEY", "VALUE"]);
    for r in records {
        let value = r
            .spec
            .get("value")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let mut lines = value.lines();
        let first: String = lines.next().unwrap_or_default().chars().take(160).collect();
        let more = lines.count();
        let shown = if more > 0 {
            format!("{first} (+{more} lines, -o yaml shows them)")
        } else {
            first
        };
        t.row([r.node.clone(), r.metadata.id.clone(), shown]);
    }
    t
}

/// The table for listed resources.
pub fn table(records: &[ResourceRecord]) -> Table {
    let mut t = Table::new(HEADER);
    for r in records {
        t.row(r.cells());
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let resource_type = canonical_type(&args.resource_type);
    if args.watch {
        return watch(&session, &args, resource_type).await;
    }
    let (namespace, id) = (args.namespace.clone(), args.id.clone());
    let results = session
        .each(|c| {
            let (namespace, resource_type, id) =
                (namespace.clone(), resource_type.clone(), id.clone());
            async move { fetch(&c, namespace, resource_type, id).await }
        })
        .await;
    let records: Vec<ResourceRecord> = session::successes(&results)
        .flat_map(|(node, list)| list.iter().map(move |r| ResourceRecord::new(node, r, None)))
        .collect();
    output::print_records(
        args.output,
        || {
            if resource_type == "meta" {
                meta_table(&records)
            } else {
                table(&records)
            }
        },
        &records,
    )?;
    Ok(session::report_errors(&results))
}

async fn fetch(
    c: &NodeClient,
    namespace: String,
    resource_type: String,
    id: Option<String>,
) -> Result<Vec<Resource>, String> {
    match id {
        Some(id) => {
            let request = ResourceGetRequest {
                namespace,
                r#type: resource_type,
                id,
            };
            c.call("ResourceGet", request, |mut m, r| async move {
                m.resource_get(r).await
            })
            .await
            .map(|r| vec![r])
        }
        None => {
            let request = ResourceListRequest {
                namespace,
                r#type: resource_type,
            };
            c.call("ResourceList", request, |mut m, r| async move {
                m.resource_list(r).await
            })
            .await
            .map(|l| l.resources)
        }
    }
}

/// The event column for watches.
pub fn event_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Created => "created",
        Kind::Updated => "updated",
        Kind::Destroyed => "destroyed",
        Kind::Bootstrapped => "bootstrapped",
    }
}

async fn watch(session: &Session, args: &Args, resource_type: String) -> anyhow::Result<ExitCode> {
    let format = args.output;
    let node_width = session
        .clients
        .iter()
        .map(|c| match c {
            Ok(c) => c.node.to_string().len(),
            Err(e) => e.node.len(),
        })
        .max()
        .unwrap_or(4);
    if format == Format::Table {
        print_line(&watch_row(
            &["NODE", "EVENT", "NAMESPACE", "TYPE", "ID", "VERSION"],
            node_width,
        ));
    }
    let request = ResourceWatchRequest {
        namespace: args.namespace.clone(),
        r#type: resource_type,
        id: args.id.clone().unwrap_or_default(),
        bootstrap: true,
    };
    let results = session
        .each(|c| {
            let request = request.clone();
            async move {
                let mut stream = c
                    .call("ResourceWatch", request, |mut m, r| async move {
                        m.resource_watch(r).await
                    })
                    .await?;
                loop {
                    let event = match stream.message().await {
                        Ok(Some(e)) => e,
                        Ok(None) => return Ok(()),
                        Err(s) => return Err(c.explain(&s, "ResourceWatch")),
                    };
                    // The end of the initial listing carries no resource.
                    let Some(resource) = &event.resource else {
                        continue;
                    };
                    let kind = Kind::try_from(event.kind).unwrap_or(Kind::Updated);
                    let record =
                        ResourceRecord::new(&c.node.to_string(), resource, Some(event_name(kind)));
                    let line = match format {
                        Format::Table => {
                            let mut cells = record.cells();
                            cells.insert(1, event_name(kind).to_string());
                            let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
                            watch_row(&cells, node_width)
                        }
                        Format::Json => {
                            serde_json::to_string(&record).map_err(|e| e.to_string())?
                        }
                        Format::Yaml => format!(
                            "---\n{}",
                            serde_yaml::to_string(&record).map_err(|e| e.to_string())?
                        )
                        .trim_end()
                        .to_string(),
                    };
                    print_line(&line);
                }
            }
        })
        .await;
    Ok(session::report_errors(&results))
}

/// A watch row: columns of fixed width, since rows print as they come.
pub fn watch_row(cells: &[&str], node_width: usize) -> String {
    let widths = [node_width, 12, 10, 14, 24];
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        match widths.get(i) {
            Some(w) if i + 1 < cells.len() => line.push_str(&format!("{cell:<w$}   ")),
            _ => line.push_str(cell),
        }
    }
    line.trim_end().to_string()
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::machine::ResourceMetadata;

    fn resource(id: &str, spec: &str) -> Resource {
        Resource {
            metadata: Some(ResourceMetadata {
                namespace: "network".into(),
                r#type: "addresses".into(),
                id: id.into(),
                version: 3,
                created: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 0,
                }),
                updated: None,
            }),
            spec: spec.into(),
        }
    }

    #[test]
    fn aliases_map_to_types_and_others_pass_through() {
        assert_eq!(canonical_type("mc"), "machineconfig");
        assert_eq!(canonical_type("MachineConfig"), "machineconfig");
        assert_eq!(canonical_type("svc"), "services");
        assert_eq!(canonical_type("addr"), "addresses");
        assert_eq!(canonical_type("sp"), "staticpods");
        assert_eq!(canonical_type("ev"), "events");
        assert_eq!(canonical_type("Widgets"), "Widgets");
        for (t, aliases) in TYPES {
            assert_eq!(canonical_type(t), *t);
            for a in *aliases {
                assert_eq!(canonical_type(a), *t);
            }
        }
    }

    #[test]
    fn tables_have_node_metadata_and_version() {
        let records = vec![
            ResourceRecord::new(
                "10.0.0.1:50000",
                &resource("eth0/10.0.2.15/24", "address: 10.0.2.15/24\n"),
                None,
            ),
            ResourceRecord::new("10.0.0.1:50000", &resource("lo/127.0.0.1/8", ""), None),
        ];
        assert_eq!(
            table(&records).render(),
            "NODE             NAMESPACE   TYPE        ID                  VERSION\n\
             10.0.0.1:50000   network     addresses   eth0/10.0.2.15/24   3\n\
             10.0.0.1:50000   network     addresses   lo/127.0.0.1/8      3\n"
        );
    }

    #[test]
    fn yaml_specs_become_structure_and_other_text_stays_text() {
        let r = ResourceRecord::new(
            "n1",
            &resource("a", "address: 10.0.2.15/24\nlink: eth0\n"),
            None,
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["spec"]["link"], "eth0");
        assert_eq!(json["metadata"]["type"], "addresses");
        assert_eq!(json["metadata"]["created"], "1970-01-01T00:00:00Z");
        assert!(json["metadata"].get("updated").is_none());
        assert!(json.get("event").is_none());
        let r = ResourceRecord::new("n1", &resource("a", "key: [unclosed"), None);
        assert_eq!(serde_json::to_value(&r).unwrap()["spec"], "key: [unclosed");
        let yaml = serde_yaml::to_string(&ResourceRecord::new(
            "n1",
            &resource("a", "x: 1\n"),
            Some("created"),
        ))
        .unwrap();
        assert!(
            yaml.starts_with("node: n1\nevent: created\nmetadata:\n"),
            "{yaml}"
        );
        assert!(yaml.ends_with("spec:\n  x: 1\n"), "{yaml}");
    }

    #[test]
    fn watch_rows_have_fixed_columns() {
        assert_eq!(
            watch_row(&["NODE", "EVENT", "NAMESPACE", "TYPE", "ID", "VERSION"], 6),
            "NODE     EVENT          NAMESPACE    TYPE             ID                         VERSION"
        );
        assert_eq!(
            watch_row(&["n1", "created", "", "links", "eth0", "1"], 6),
            "n1       created                     links            eth0                       1"
        );
    }
}
