//! `cairnctl gen upgrade-key -o <dir>`: an Ed25519 key pair for signing
//! upgrade images. The private key signs at build time (`make image
//! SIGNING_KEY=<dir>/upgrade-key.pem`); the public key goes into the nodes'
//! `machine.install.trustedKeys`, after which they accept only images it
//! signed. Formats: config::signing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use config::fsutil::write_private;
use config::signing;

/// The private key's file name in the output directory.
pub const PRIVATE_FILE: &str = "upgrade-key.pem";
/// The public key's file name in the output directory.
pub const PUBLIC_FILE: &str = "upgrade-key.pub";

#[derive(clap::Args)]
pub struct UpgradeKeyArgs {
    /// Directory to write upgrade-key.pem (private, 0600) and
    /// upgrade-key.pub to.
    #[arg(
        short = 'o',
        long = "output-dir",
        value_name = "DIR",
        default_value = "."
    )]
    pub output_dir: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

/// Writes a new key pair into `dir`; returns the public key.
pub fn write_key_pair(dir: &Path, force: bool) -> anyhow::Result<signing::TrustedKey> {
    let (private, public) = signing::generate()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (priv_path, pub_path) = (dir.join(PRIVATE_FILE), dir.join(PUBLIC_FILE));
    if !force {
        for p in [&priv_path, &pub_path] {
            if p.exists() {
                anyhow::bail!("{} already exists (use --force to overwrite)", p.display());
            }
        }
    }
    write_private(&priv_path, private.as_bytes(), force)?;
    std::fs::write(&pub_path, public.pem())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    Ok(public)
}

/// A machine-config patch that makes a node trust `key`.
pub fn trust_patch(key: &signing::TrustedKey) -> String {
    let mut s = String::from("machine:\n  install:\n    trustedKeys:\n    - |\n");
    for line in key.pem().lines() {
        s.push_str("      ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

pub fn run(a: UpgradeKeyArgs) -> anyhow::Result<ExitCode> {
    let key = write_key_pair(&a.output_dir, a.force)?;
    let dir = a.output_dir.display();
    eprintln!(
        "wrote {dir}/{PRIVATE_FILE} (private, mode 0600) and {dir}/{PUBLIC_FILE}; key id {}",
        key.id()
    );
    eprintln!("sign images with: make image SIGNING_KEY={dir}/{PRIVATE_FILE}");
    eprintln!("make nodes accept only images signed with it by adding to their configs:");
    print!("{}", trust_patch(&key));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn writes_a_private_key_only_the_owner_reads_and_a_usable_patch() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys");
        let key = write_key_pair(&out, false).unwrap();
        let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(PRIVATE_FILE), 0o600);
        let private = std::fs::read_to_string(out.join(PRIVATE_FILE)).unwrap();
        let public: signing::TrustedKey = std::fs::read_to_string(out.join(PUBLIC_FILE))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(public, key);
        // The pair signs and verifies.
        let sig = signing::sign(&private, &[3; 32]).unwrap();
        assert_eq!(
            signing::verify(&[3; 32], Some(sig.as_bytes()), &[public]),
            Ok(key.id())
        );
        // Not overwritten without --force.
        let e = write_key_pair(&out, false).unwrap_err().to_string();
        assert!(e.contains("already exists (use --force"), "{e}");
        assert_eq!(
            std::fs::read_to_string(out.join(PRIVATE_FILE)).unwrap(),
            private
        );
        let new = write_key_pair(&out, true).unwrap();
        assert_ne!(new, key);

        // The printed patch puts the key where the config wants it.
        let patch = trust_patch(&new);
        let v: serde_yaml::Value = serde_yaml::from_str(&patch).unwrap();
        let listed = v["machine"]["install"]["trustedKeys"][0].as_str().unwrap();
        assert_eq!(listed.parse::<signing::TrustedKey>().unwrap(), new);
    }
}
