//! The `grpc-timeout` header parser against the gRPC HTTP/2 grammar
//! (`1*8DIGIT ("H" / "M" / "S" / "m" / "u" / "n")`): accepted exactly when the grammar
//! matches, with the value it spells, and always representable as a deadline.
#![no_main]

use cohost_server::grpc::convert::parse_grpc_timeout;
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let got = parse_grpc_timeout(text);
    let b = text.as_bytes();
    let grammar = (2..=9).contains(&b.len())
        && b[..b.len() - 1].iter().all(u8::is_ascii_digit)
        && b"HMSmun".contains(&b[b.len() - 1]);
    assert_eq!(got.is_some(), grammar, "{text:?}");
    if let Some(d) = got {
        let n: u128 = text[..text.len() - 1].parse().unwrap();
        let nanos_per = match b[b.len() - 1] {
            b'H' => 3_600_000_000_000,
            b'M' => 60_000_000_000,
            b'S' => 1_000_000_000,
            b'm' => 1_000_000,
            b'u' => 1_000,
            _ => 1,
        };
        assert_eq!(d.as_nanos(), n * nanos_per, "{text:?}");
        assert!(Instant::now().checked_add(d).is_some(), "{text:?}");
    }
});
