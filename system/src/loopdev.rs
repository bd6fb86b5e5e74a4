//! Attaching a file to a loop device, read-only.
//!
//! Hand-written on purpose: the `loopdev` crate generates its bindings with
//! bindgen at build time (needs libclang on the build machine) and brings
//! more than init needs. The kernel ABI here is three ioctls; the structs and
//! numbers come from `linux-raw-sys` (generated from the kernel's uapi
//! headers), and the calls go through rustix's typed ioctl API.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use linux_raw_sys::loop_device as uapi;
use rustix::ioctl::{self, IntegerSetter, Ioctl, IoctlOutput, Opcode, Setter};

const LOOP_CONTROL: &str = "/dev/loop-control";

/// A loop device backed by a file. Dropping it closes the device but leaves
/// it attached (no autoclear): it is the root filesystem from now on.
#[derive(Debug)]
pub struct LoopDevice {
    pub path: PathBuf,
    _device: OwnedFd,
}

/// Attaches `image` read-only to the first free loop device.
pub fn attach_read_only(image: &Path) -> io::Result<LoopDevice> {
    let backing = File::open(image)?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(LOOP_CONTROL)?;
    // Another process could take the free device between GET_FREE and
    // CONFIGURE (EBUSY); nothing else runs this early, but retry anyway.
    let mut last_err = None;
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let number = unsafe { ioctl::ioctl(&control, GetFree) }?;
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = File::open(&path)?;
        match configure(&device, &backing, image) {
            Ok(()) => {
                return Ok(LoopDevice {
                    path,
                    _device: device.into(),
                })
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                last_err = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free loop device")))
}

fn configure(device: &File, backing: &File, image: &Path) -> io::Result<()> {
    let info = loop_info(image);
    let config = uapi::loop_config {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info,
        __reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which is the type
    // passed; the backing fd stays open for the duration of the call.
    let configured = unsafe {
        ioctl::ioctl(
            device,
            Setter::<{ uapi::LOOP_CONFIGURE as Opcode }, _>::new(config),
        )
    };
    match configured {
        Ok(()) => Ok(()),
        // Kernels before 5.8 lack LOOP_CONFIGURE: set the fd, then the status.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOTTY => {
            let fd = backing.as_raw_fd() as usize;
            // SAFETY: LOOP_SET_FD takes the backing file descriptor as integer.
            unsafe {
                ioctl::ioctl(
                    device,
                    IntegerSetter::<{ uapi::LOOP_SET_FD as Opcode }>::new_usize(fd),
                )
            }?;
            // SAFETY: LOOP_SET_STATUS64 reads a `struct loop_info64`.
            unsafe {
                ioctl::ioctl(
                    device,
                    Setter::<{ uapi::LOOP_SET_STATUS64 as Opcode }, _>::new(info),
                )
            }?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Status for a read-only loop device named after its backing file.
fn loop_info(image: &Path) -> uapi::loop_info64 {
    let mut info = uapi::loop_info64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: uapi::LO_FLAGS_READ_ONLY as u32,
        lo_file_name: [0; uapi::LO_NAME_SIZE as usize],
        lo_crypt_name: [0; uapi::LO_NAME_SIZE as usize],
        lo_encrypt_key: [0; uapi::LO_KEY_SIZE as usize],
        lo_init: [0; 2],
    };
    let name = image.as_os_str().as_encoded_bytes();
    // Keep a terminating NUL.
    let len = name.len().min(info.lo_file_name.len() - 1);
    info.lo_file_name[..len].copy_from_slice(&name[..len]);
    info
}

/// LOOP_CTL_GET_FREE: no argument; the result is the device number, which
/// none of rustix's ready-made patterns returns.
struct GetFree;

// SAFETY: the ioctl takes no pointer and writes no user memory; its output is
// the non-negative return value.
unsafe impl Ioctl for GetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        uapi::LOOP_CTL_GET_FREE as Opcode
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        output: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        Ok(output as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_only_and_names_the_image() {
        let info = loop_info(Path::new("/rootfs.sqsh"));
        assert_eq!(info.lo_flags, uapi::LO_FLAGS_READ_ONLY as u32);
        assert_eq!(&info.lo_file_name[..13], b"/rootfs.sqsh\0");
    }

    #[test]
    fn long_names_are_truncated_with_a_terminating_nul() {
        let long = "/".to_string() + &"x".repeat(100);
        let info = loop_info(Path::new(&long));
        assert_eq!(info.lo_file_name[63], 0);
        assert_eq!(info.lo_file_name[62], b'x');
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_abi() {
        // From include/uapi/linux/loop.h: 0x4C.. ("L").
        assert_eq!(uapi::LOOP_SET_FD, 0x4C00);
        assert_eq!(uapi::LOOP_SET_STATUS64, 0x4C04);
        assert_eq!(uapi::LOOP_CONFIGURE, 0x4C0A);
        assert_eq!(uapi::LOOP_CTL_GET_FREE, 0x4C82);
        assert_eq!(std::mem::size_of::<uapi::loop_config>(), 304);
    }
}
