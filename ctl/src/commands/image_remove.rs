//! `cairnctl image remove <ref>`: removes an imported image from nodes;
//! the system's own images are refused.

use std::process::ExitCode;

use api::machine::ImageRemoveRequest;

use crate::global::GlobalArgs;
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 image remove cairn.local/my-app:1.0

Needs an operator certificate.")]
pub struct Args {
    /// The image's full name, as `cairnctl image list -k` shows it.
    pub name: String,
    /// Remove from the system namespace instead of Kubernetes' k8s.io.
    #[arg(long)]
    pub system_namespace: bool,
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let req = ImageRemoveRequest {
        name: args.name.clone(),
        kubernetes: !args.system_namespace,
    };
    let results = session
        .each(|c| {
            let req = req.clone();
            async move {
                c.call("ImageRemove", req, |mut m, r| async move {
                    m.image_remove(r).await
                })
                .await
            }
        })
        .await;
    for (node, r) in session::successes(&results) {
        println!("{node}: removed {} ({})", r.name, r.digest);
    }
    Ok(session::report_errors(&results))
}
