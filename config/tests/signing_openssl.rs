//! Signed upgrades across implementations: keys from `config::signing`
//! sign with `images/sign-upgrade.sh` (openssl, as `make image
//! SIGNING_KEY=...` does) and verify with `config::signing::verify`, and
//! openssl's own keys sign with our code. Skipped without openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

use config::signing::{self, SigningError, TrustedKey};
use sha2::Digest as _;

fn have_openssl() -> bool {
    Command::new("openssl").arg("version").output().is_ok()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/sign-upgrade.sh")
}

fn sign_with_script(key: &Path, file: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new(script()).arg(key).arg(file).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut sig = file.as_os_str().to_owned();
    sig.push(".sig");
    Ok(std::fs::read(sig).unwrap())
}

#[test]
fn the_build_script_signs_what_nodes_verify() {
    if !have_openssl() {
        eprintln!("skipping: openssl is not installed (images/install-deps.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = signing::generate().unwrap();
    let key = dir.path().join("upgrade-key.pem");
    std::fs::write(&key, &private).unwrap();
    let asset = dir.path().join("vmlinuz");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&asset, &bytes).unwrap();

    let sig = sign_with_script(&key, &asset).unwrap();
    let sha: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    assert_eq!(
        signing::verify(&sha, Some(&sig), std::slice::from_ref(&public)),
        Ok(public.id())
    );
    // Other bytes: a bad signature.
    let other: [u8; 32] = sha2::Sha256::digest(b"other").into();
    assert!(matches!(
        signing::verify(&other, Some(&sig), std::slice::from_ref(&public)),
        Err(SigningError::BadSignature { .. })
    ));
    // Ed25519 signatures are deterministic: ours and openssl's agree.
    assert_eq!(
        String::from_utf8(sig).unwrap(),
        signing::sign(&private, &sha).unwrap()
    );
}

#[test]
fn openssl_keys_work_and_other_key_types_are_refused() {
    if !have_openssl() {
        eprintln!("skipping: openssl is not installed (images/install-deps.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let gen = |alg: &[&str]| {
        let ok = Command::new("openssl")
            .arg("genpkey")
            .args(alg)
            .arg("-out")
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl genpkey {alg:?}");
    };
    gen(&["-algorithm", "ed25519"]);
    let public_pem = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let public: TrustedKey = String::from_utf8(public_pem).unwrap().parse().unwrap();
    let asset = dir.path().join("initramfs.img");
    std::fs::write(&asset, b"initramfs").unwrap();
    let sig = sign_with_script(&key, &asset).unwrap();
    let sha: [u8; 32] = sha2::Sha256::digest(b"initramfs").into();
    assert_eq!(
        signing::verify(&sha, Some(&sig), std::slice::from_ref(&public)),
        Ok(public.id())
    );
    // Our signer reads openssl's (PKCS#8 v1) keys too.
    let ours = signing::sign(&std::fs::read_to_string(&key).unwrap(), &sha).unwrap();
    assert_eq!(ours.as_bytes(), &sig[..]);

    gen(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let e = sign_with_script(&key, &asset).unwrap_err();
    assert!(e.contains("is not an Ed25519 key"), "{e}");
}
