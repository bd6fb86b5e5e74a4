//! `cairnctl image list|import|remove`: the container images on nodes.
//! Each verb lives in its own file (`image_list.rs`, `image_import.rs`,
//! `image_remove.rs`).

use std::process::ExitCode;

use crate::global::GlobalArgs;

use super::{image_cache_create, image_import, image_list, image_remove};

#[derive(clap::Subcommand, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 image list -k
  cairnctl -n 10.5.0.2 image import my-app.tar
  cairnctl -n 10.5.0.2 image remove cairn.local/my-app:1.0
  cairnctl image cache-create --images my-app.tar -o _out/my-cache

Images in the node's cache (the system's and imported ones) are served to
containerd as a registry on the node's loopback, so Pods naming them start
with any pull policy and without network. An image cache made with
`cache-create` and built into the image (`make image IMAGE_CACHE=<dir>`)
is imported by every node that boots it.")]
pub enum ImageCommand {
    /// List the images on nodes, with digests and sizes.
    List(image_list::Args),
    /// Stream an OCI image archive to nodes and import it.
    Import(image_import::Args),
    /// Remove an imported image (never a system or cached one).
    Remove(image_remove::Args),
    /// Build an image cache for the boot medium from image archives (no node needed).
    CacheCreate(image_cache_create::Args),
}

pub async fn run(command: ImageCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match command {
        ImageCommand::List(a) => image_list::run(a, global).await,
        ImageCommand::Import(a) => image_import::run(a, global).await,
        ImageCommand::Remove(a) => image_remove::run(a, global).await,
        ImageCommand::CacheCreate(a) => image_cache_create::run(a),
    }
}
