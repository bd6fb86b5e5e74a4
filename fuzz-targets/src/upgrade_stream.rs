//! The Upgrade RPC's client stream as machined receives it
//! (machined::upgrade::receive::write_slot): gRPC frames of UpgradeRequest
//! messages (header, chunks, sha256 per asset) written into a scratch BOOT
//! and META. Never panics; a stream that is accepted leaves a bootable
//! slot B that GRUB boots once, and one that is refused leaves slot B and
//! GRUB's default alone.

use std::path::PathBuf;
use std::sync::OnceLock;

use api::machine::UpgradeRequest;
use host::meta::Meta;
use machined::upgrade::receive::write_slot;
use machined::upgrade::slots::Slots;
use prost::Message as _;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("cairn-fuzz-upgrade-{}", std::process::id()))
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// The messages of a gRPC request body; a frame that does not decode ends
/// the stream with an error, as tonic's decoder would.
fn messages(mut body: &[u8]) -> Vec<Result<UpgradeRequest, tonic::Status>> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let Some(msg) = body.get(5..5 + len) else {
            out.push(Err(tonic::Status::internal("the stream was cut")));
            break;
        };
        match UpgradeRequest::decode(msg) {
            Ok(m) => out.push(Ok(m)),
            Err(e) => {
                out.push(Err(tonic::Status::internal(e.to_string())));
                break;
            }
        }
        body = &body[5 + len..];
    }
    out
}

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let dir = scratch();
    let _ = std::fs::remove_dir_all(dir);
    let boot = dir.join("boot");
    std::fs::create_dir_all(boot.join("A")).expect("the scratch BOOT");
    std::fs::write(dir.join("meta"), vec![0u8; 8192]).expect("the scratch META");
    let slots = Slots::new(&boot);
    slots.make_default("A").expect("a GRUB environment");
    let meta = Meta::open(&dir.join("meta"), None).expect("META opens");

    let stream = futures::stream::iter(messages(data));
    let result = runtime().block_on(write_slot(&slots, &meta, "A", &[], stream));
    let env = slots.env();
    match result {
        Ok(r) => {
            assert_eq!(r.slot, "B");
            assert!(slots.bootable("B"), "accepted, but slot B cannot boot");
            assert_eq!(env.next_slot(), Some("B"));
        }
        Err(_) => {
            assert!(!boot.join("B").exists(), "a refused stream wrote slot B");
            assert_eq!(env.next_slot(), None);
        }
    }
    assert_eq!(env.default_slot(), "A");
}
