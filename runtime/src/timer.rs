//! A sleep precise to microseconds on the caller's tokio reactor (a Linux timerfd), for
//! batching delays kept by the thread that queued a request (tokio's own timer ticks in
//! milliseconds, far coarser than a batching delay of a few hundred microseconds).

use std::io;
use std::time::Instant;

/// Whether [`sleep_until`] can sleep on this platform.
pub const SUPPORTED: bool = cfg!(target_os = "linux");

/// Sleeps until `at` on the current tokio runtime's I/O driver (which must be enabled:
/// the caller checks); returns at once for an instant already past.
#[cfg(target_os = "linux")]
pub async fn sleep_until(at: Instant) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    let Some(left) = at
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    else {
        return Ok(());
    };
    // SAFETY: a plain system call; its result is checked before use.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a file descriptor just opened and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `fd` is an open timerfd and `spec` a valid, initialised itimerspec.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the AsyncFd owns `fd` (an OwnedFd: open until dropped with it, and always
    // the same descriptor).
    let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    loop {
        let mut ready = fd.readable().await?;
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer from an open descriptor.
        let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
        if n == 8 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(e);
        }
        ready.clear_ready();
    }
}

/// Sleeps until `at` on the current tokio runtime's I/O driver (unsupported here).
#[cfg(not(target_os = "linux"))]
pub async fn sleep_until(_at: Instant) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "precise timers need Linux's timerfd",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Wakes no earlier than asked and well before tokio's millisecond timer would, and
    /// at once for a past instant.
    #[tokio::test(flavor = "current_thread")]
    async fn wakes_after_the_instant() {
        for us in [50u64, 300, 700] {
            let start = Instant::now();
            sleep_until(start + Duration::from_micros(us))
                .await
                .unwrap();
            assert!(start.elapsed() >= Duration::from_micros(us), "woke early");
        }
        let past = Instant::now() - Duration::from_millis(1);
        sleep_until(past).await.unwrap();
    }
}
