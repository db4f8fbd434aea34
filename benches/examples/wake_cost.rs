//! Issue 22 item 3, the bound of a batching delay: what one timed wake-up of a sleeping
//! thread costs this machine in CPU time, which a static batcher's delay adds to every
//! batch that does not fill (a null server pays no timer). Prints, per operation, CPU
//! time (getrusage, user + system) per repetition:
//!
//! - a thread sleeping DELAY µs (`std::thread::sleep`, clock_nanosleep) and waking;
//! - a timer firing at once (the timer interrupt alone, no sleep between);
//! - the system calls of a one-shot timerfd (create, arm, close) with nothing firing.
//!
//! ```text
//! cargo run --release -p cohost-bench --example wake_cost -- [--delay-us 500] [--n 4000]
//! ```

use std::time::{Duration, Instant};

/// CPU time this process has used, in µs.
fn cpu_us() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// A one-shot timerfd armed to fire after `ns` nanoseconds; returns its descriptor.
fn armed_timerfd(ns: i64) -> i32 {
    // SAFETY: plain system calls on a descriptor this function opens.
    unsafe {
        let fd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC);
        assert!(fd >= 0, "timerfd_create failed");
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: ns / 1_000_000_000,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        assert!(libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) == 0);
        fd
    }
}

/// Runs `f` `n` times; CPU µs and wall µs per run.
fn per_run(n: u32, mut f: impl FnMut()) -> (f64, f64) {
    let (c0, t0) = (cpu_us(), Instant::now());
    for _ in 0..n {
        f();
    }
    let cpu = (cpu_us() - c0) / n as f64;
    (cpu, t0.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn main() {
    let mut delay_us = 500u64;
    let mut n = 4000u32;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (
            pair[0].as_str(),
            pair.get(1).and_then(|v| v.parse::<u64>().ok()),
        ) {
            ("--delay-us", Some(v)) => delay_us = v,
            ("--n", Some(v)) => n = v as u32,
            _ => {
                eprintln!("usage: wake_cost [--delay-us 500] [--n 4000]");
                std::process::exit(2);
            }
        }
    }
    let delay = Duration::from_micros(delay_us);
    println!("CPU time per repetition (user + system), {n} repetitions each, 3 rounds");
    for round in 1..=3 {
        let (sleep_cpu, sleep_wall) = per_run(n, || std::thread::sleep(delay));
        let (fire_cpu, _) = per_run(n, || {
            let fd = armed_timerfd(1);
            let mut expirations = 0u64;
            // SAFETY: reads 8 bytes into a u64 from the blocking timerfd opened above.
            unsafe {
                libc::read(fd, (&mut expirations as *mut u64).cast(), 8);
                libc::close(fd);
            }
        });
        let (calls_cpu, _) = per_run(n * 10, || {
            let fd = armed_timerfd(10_000_000_000);
            // SAFETY: closes the descriptor opened above.
            unsafe { libc::close(fd) };
        });
        println!(
            "round {round}: sleep {delay_us} us and wake {sleep_cpu:6.2} us CPU ({sleep_wall:.0} us wall) | timer firing at once {fire_cpu:6.2} us | timerfd create+arm+close, not firing {calls_cpu:5.2} us"
        );
    }
}
