//! The HTTP forms of a report in Envoy's `endpoint-load-metrics` header: `TEXT` (the
//! standard keys, `key=value` separated by `, `), `JSON` (the proto3 JSON mapping of
//! `OrcaLoadReport`) and `BIN` (the serialized message in base64).

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use cohost_protocol::prost::Message;
use cohost_protocol::xds::data::orca::v3::OrcaLoadReport;
use cohost_runtime::LoadReport;
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
    let mut out = String::with_capacity(192);
    out.push_str("TEXT ");
    let mut put = |key: &str, v: f64| {
        if out.len() > 5 {
            out.push_str(", ");
        }
        out.push_str(key);
        out.push('=');
        push_decimal(&mut out, v);
    };
    put("application_utilization", r.application_utilization);
    put("cpu_utilization", r.cpu_utilization);
    put("mem_utilization", r.mem_utilization);
    put("rps_fractional", r.rps_fractional);
    put("eps", r.eps);
    for (k, v) in &r.named_metrics {
        out.push_str(", named_metrics.");
        out.push_str(k);
        out.push('=');
        push_decimal(&mut out, *v);
    }
    out
}

/// The load counter alone in the TEXT form (`named_metrics.model_load`, `host_load`): the
/// `endpoint-load-metrics` header of a refusal and the gRPC `cohost-load` metadata.
pub fn load_text(load: &LoadReport) -> String {
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    let mut out = String::with_capacity(80);
    out.push_str("TEXT named_metrics.model_load=");
    push_decimal(&mut out, finite(load.model_load));
    out.push_str(", named_metrics.host_load=");
    push_decimal(&mut out, finite(load.host_load));
    out
}

/// Appends `v` in decimal with at most 6 fractional digits, trailing zeros dropped
/// (`0.125`, `120`, `1234.5`): what a balancer reads, at a tenth of `{}`'s cost (every
/// response carries a report). Values at or past 1e9 (where 6 places outgrow an f64), and non-finite ones, use `{}`.
pub fn push_decimal(out: &mut String, v: f64) {
    const SCALE: f64 = 1e6;
    if !v.is_finite() || v.abs() >= 1e9 {
        let _ = write!(out, "{v}");
        return;
    }
    let scaled = (v.abs() * SCALE).round() as u64;
    if v < 0.0 && scaled != 0 {
        out.push('-');
    }
    let (int, mut frac) = (scaled / 1_000_000, scaled % 1_000_000);
    out.push_str(itoa::Buffer::new().format(int));
    if frac != 0 {
        let mut digits = 6;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        out.push('.');
        let mut buf = itoa::Buffer::new();
        let f = buf.format(frac);
        for _ in f.len()..digits {
            out.push('0');
        }
        out.push_str(f);
    }
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
    fn decimals_are_exact_to_six_places_and_short() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (1.25, "1.25"),
            (120.0, "120"),
            (0.125, "0.125"),
            (0.000_001, "0.000001"),
            (0.000_000_4, "0"),
            (0.050_5, "0.0505"),
            (1_234.567_891_2, "1234.567891"),
            (0.999_999_9, "1"),
            (-2.5, "-2.5"),
            (999_999_999.25, "999999999.25"),
            (2e9, "2000000000"),
            (1e20, "100000000000000000000"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            push_decimal(&mut s, v);
            assert_eq!(s, want, "{v}");
        }
        // Against `{}` rounded to 6 places, over many values the reports carry.
        let mut x = 0.000_123_f64;
        while x < 1e9 {
            let mut s = String::new();
            push_decimal(&mut s, x);
            let back: f64 = s.parse().unwrap();
            assert!((back - x).abs() <= 5e-7 + x * 1e-15, "{x} -> {s}");
            x *= 1.37;
        }
    }

    #[test]
    fn the_load_counter_alone() {
        let load = LoadReport {
            model_load: 0.25,
            host_load: f64::INFINITY,
            ..Default::default()
        };
        assert_eq!(
            load_text(&load),
            "TEXT named_metrics.model_load=0.25, named_metrics.host_load=0"
        );
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
