//! Waiting for the kernel's random number generator without blocking the
//! runtime. Key generation (and dhcproto's transaction ids) read
//! `getrandom(2)`, which blocks until the kernel's CRNG is initialized. On a
//! VM without an RNG device under emulation that can take minutes, and a
//! blocked call on machined's single runtime thread would freeze PID 1
//! (signals, the API, the supervisor). So callers await [`ready`] first.

use std::time::Duration;

use tokio::sync::OnceCell;

static READY: OnceCell<()> = OnceCell::const_new();

/// Whether the CRNG is initialized right now (never blocks).
pub fn is_ready() -> bool {
    let mut b = [0u8; 1];
    // SAFETY: writes at most 1 byte into a live 1-byte buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, libc::GRND_NONBLOCK) };
    n == 1
}

/// Resolves once `getrandom(2)` no longer blocks. The blocking wait runs on
/// the blocking pool; a console line explains a long wait.
pub async fn ready() {
    READY
        .get_or_init(|| async {
            if is_ready() {
                return;
            }
            let wait = tokio::task::spawn_blocking(|| {
                let mut b = [0u8; 1];
                // SAFETY: as above; without GRND_NONBLOCK this waits for the CRNG.
                unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, 0) };
            });
            tokio::pin!(wait);
            if tokio::time::timeout(Duration::from_secs(2), &mut wait)
                .await
                .is_err()
            {
                runtime::console!(
                    "entropy: waiting for the kernel's random number generator \
                     (a VM needs an RNG device, e.g. QEMU -device virtio-rng-pci)"
                );
                let _ = wait.await;
                runtime::console!("entropy: the random number generator is ready");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn host_rng_is_ready() {
        super::ready().await;
        assert!(super::is_ready());
    }
}
