//! Differential: a tensor's JSON `data` through the streaming decoder
//! (`codec::elements`, reached through `decode_request`) against the
//! `serde_json::Value`-tree conversion it replaced (`codec::oracle`, feature `oracle`).
//! For every datatype both must accept the same values with the same elements, or refuse
//! with the same message.
#![no_main]

use cohost_protocol::codec::decode_request;
use cohost_protocol::codec::oracle::old_json_data;
use cohost_runtime::DataType;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Only texts that are one JSON value: embedded as `data` they cannot escape it.
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if value.is_null() {
        return; // `"data": null` is no data, refused before any conversion.
    }
    for dt in DataType::ALL {
        let old = old_json_data(dt, &value, "input 'x'");
        let shape = match &old {
            Ok(d) => d.len(),
            Err(_) => 1,
        };
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[{shape}],"datatype":"{dt}","data":{text}}}]}}"#
        );
        let new = decode_request(body.as_bytes(), None);
        match (old, new) {
            (Ok(a), Ok(b)) => {
                let b = &b.request.inputs[0].data;
                assert_eq!(a.datatype(), b.datatype());
                assert_eq!(a.to_le_bytes(), b.to_le_bytes(), "{dt} {text}");
            }
            (Err(a), Err(b)) => assert_eq!(a.message, b.message, "{dt} {text}"),
            // Nested three levels deeper, the body can pass serde_json's recursion limit
            // where the value alone did not.
            (Ok(_), Err(b)) if b.message.contains("recursion limit") => {}
            (a, b) => panic!("{dt} {text}: old {a:?} new {:?}", b.map(|d| d.request)),
        }
    }
});
