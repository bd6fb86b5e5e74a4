//! `cairnctl image list [-k]`: containerd's images on nodes, in the system
//! namespace or (`-k`) Kubernetes' `k8s.io`, with digests, sizes and where
//! each came from (system: the payload's; cache: the boot medium's image
//! cache; user: `cairnctl image import`).

use std::process::ExitCode;

use api::machine::{ImageListRequest, ImageListResponse};
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 image list -k
  cairnctl -n 10.5.0.2 image list -k -o json")]
pub struct Args {
    /// Kubernetes' images (containerd namespace k8s.io) instead of the
    /// system namespace's.
    #[arg(short = 'k', long)]
    pub kubernetes: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub node: String,
    pub name: String,
    pub digest: String,
    pub size: u64,
    pub origin: String,
}

pub fn records(node: &str, r: &ImageListResponse) -> Vec<ImageRecord> {
    r.images
        .iter()
        .map(|i| ImageRecord {
            node: node.to_string(),
            name: i.name.clone(),
            digest: i.digest.clone(),
            size: i.size,
            origin: i.origin.clone(),
        })
        .collect()
}

pub fn table(records: &[ImageRecord]) -> Table {
    let mut t = Table::new(["NODE", "IMAGE", "DIGEST", "SIZE", "ORIGIN"]);
    for r in records {
        t.row([
            r.node.clone(),
            r.name.clone(),
            r.digest.clone(),
            output::bytes(r.size),
            if r.origin.is_empty() {
                "-".to_string()
            } else {
                r.origin.clone()
            },
        ]);
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let kubernetes = args.kubernetes;
    let results = session
        .each(|c| async move {
            c.call(
                "ImageList",
                ImageListRequest { kubernetes },
                |mut m, r| async move { m.image_list(r).await },
            )
            .await
        })
        .await;
    let all: Vec<ImageRecord> = session::successes(&results)
        .flat_map(|(node, r)| records(node, r))
        .collect();
    output::print_records(args.output, || table(&all), &all)?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::machine::ImageInfo;

    #[test]
    fn images_with_sizes_and_origins() {
        let r = ImageListResponse {
            images: vec![
                ImageInfo {
                    name: "cairn.local/pause:v1.20.2".into(),
                    digest: "sha256:ab".into(),
                    size: 1536,
                    origin: "system".into(),
                    ..Default::default()
                },
                ImageInfo {
                    name: "docker.io/library/x:1".into(),
                    ..Default::default()
                },
            ],
        };
        let recs = records("n1", &r);
        assert_eq!(recs[0].origin, "system");
        let text = table(&recs).render();
        assert!(text.contains("1.5 KiB"), "{text}");
        assert!(text.contains("docker.io/library/x:1"), "{text}");
    }
}
