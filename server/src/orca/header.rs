//! The HTTP forms of a report in Envoy's `endpoint-load-metrics` header: `TEXT` (the
//! standard keys, `key=value` separated by `, `), `JSON` (the proto3 JSON mapping of
//! `OrcaLoadReport`) and `BIN` (the serialized message in base64).

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use cohost_protocol::prost::Message;
use cohost_protocol::xds::data::orca::v3::OrcaLoadReport;
use serde_json::{Map, Value, json};
use std::fmt::Write;

/// The request header a client (Envoy) names the form it wants in.
pub const FORMAT_HEADER: &str = "endpoint-load-metrics-format";

/// A form of the `endpoint-load-metrics` header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `TEXT application_utilization=…, cpu_utilization=…, named_metrics.model_load=…`.
    #[default]
    Text,
    /// `JSON {"applicationUtilization": …, "namedMetrics": {…}}`.
    Json,
    /// `BIN <base64 of the serialized OrcaLoadReport>`.
    Bin,
}

impl Format {
    /// The form `headers` ask for ([`FORMAT_HEADER`]: TEXT, JSON or BIN, any case), else
    /// `default`.
    pub fn requested(headers: &HeaderMap, default: Format) -> Format {
        let Some(v) = headers.get(FORMAT_HEADER).and_then(|v| v.to_str().ok()) else {
            return default;
        };
        match v.trim().to_ascii_uppercase().as_str() {
            "TEXT" => Format::Text,
            "JSON" => Format::Json,
            "BIN" => Format::Bin,
            _ => default,
        }
    }
}

/// The header value of `report` in `format`.
pub fn header_value(report: &OrcaLoadReport, format: Format) -> HeaderValue {
    let text = match format {
        Format::Text => text(report),
        Format::Json => format!("JSON {}", json(report)),
        Format::Bin => format!(
            "BIN {}",
            base64::engine::general_purpose::STANDARD.encode(report.encode_to_vec())
        ),
    };
    // Every form is ASCII without control characters; the fallback is never taken.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("TEXT"))
}

/// The standard keys every Envoy TEXT parser knows (`utilization.*` is left out: older
/// parsers refuse the whole header for a key they do not know).
fn text(r: &OrcaLoadReport) -> String {
    let mut out = String::from("TEXT ");
    let mut put = |key: &str, v: f64| {
        if out.len() > 5 {
            out.push_str(", ");
        }
        let _ = write!(out, "{key}={v}");
    };
    put("application_utilization", r.application_utilization);
    put("cpu_utilization", r.cpu_utilization);
    put("mem_utilization", r.mem_utilization);
    put("rps_fractional", r.rps_fractional);
    put("eps", r.eps);
    for (k, v) in &r.named_metrics {
        put(&format!("named_metrics.{k}"), *v);
    }
    out
}

fn json(r: &OrcaLoadReport) -> Value {
    let map = |m: &std::collections::BTreeMap<String, f64>| -> Map<String, Value> {
        m.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
    };
    json!({
        "applicationUtilization": r.application_utilization,
        "cpuUtilization": r.cpu_utilization,
        "memUtilization": r.mem_utilization,
        "rpsFractional": r.rps_fractional,
        "eps": r.eps,
        "utilization": map(&r.utilization),
        "namedMetrics": map(&r.named_metrics),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> OrcaLoadReport {
        let mut r = OrcaLoadReport {
            application_utilization: 1.25,
            cpu_utilization: 0.5,
            rps_fractional: 120.0,
            eps: 2.0,
            ..Default::default()
        };
        r.utilization.insert("lanes".into(), 0.5);
        r.named_metrics.insert("model_load".into(), 0.125);
        r.named_metrics.insert("host_load".into(), 0.75);
        r
    }

    #[test]
    fn the_three_forms() {
        let r = report();
        assert_eq!(
            header_value(&r, Format::Text),
            "TEXT application_utilization=1.25, cpu_utilization=0.5, mem_utilization=0, \
             rps_fractional=120, eps=2, named_metrics.host_load=0.75, \
             named_metrics.model_load=0.125"
        );
        let j = header_value(&r, Format::Json);
        let v: Value =
            serde_json::from_str(j.to_str().unwrap().strip_prefix("JSON ").unwrap()).unwrap();
        assert_eq!(v["namedMetrics"]["model_load"], 0.125);
        assert_eq!(v["applicationUtilization"], 1.25);
        let b = header_value(&r, Format::Bin);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b.to_str().unwrap().strip_prefix("BIN ").unwrap())
            .unwrap();
        assert_eq!(OrcaLoadReport::decode(&raw[..]).unwrap(), r);
    }

    #[test]
    fn the_request_names_the_form() {
        let mut h = HeaderMap::new();
        assert_eq!(Format::requested(&h, Format::Json), Format::Json);
        h.insert(FORMAT_HEADER, HeaderValue::from_static("bin"));
        assert_eq!(Format::requested(&h, Format::Text), Format::Bin);
        h.insert(FORMAT_HEADER, HeaderValue::from_static("YAML"));
        assert_eq!(Format::requested(&h, Format::Text), Format::Text);
    }
}
