//! The OpenTelemetry Collector's `kafka` exporter: one Kafka message is one exported
//! batch (`ExportLogsServiceRequest`), many records of many resources, as `otlp_json` or
//! as `otlp_proto` (binary protobuf, the default encoding).
//!
//! Each log record becomes one flat JSON record that the ordinary reader takes in:
//! resource attributes (`service.name`, `k8s.*`) and record attributes (HTTP and gRPC
//! status) as dotted keys, `timeUnixNano` (or `observedTimeUnixNano` when 0), severity,
//! lowercase hex ids, and the body as `body` (a string body is read again as a payload;
//! a map body becomes a JSON payload).

use crate::ParseError;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Whether a line is an `otlp_json` batch.
pub fn is_otlp_json(line: &[u8]) -> bool {
    let rest = line.strip_prefix(b"{").unwrap_or(b"");
    let start = rest
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(0);
    rest[start..].starts_with(b"\"resourceLogs\"")
}

/// Whether a record may be an `otlp_proto` batch (field 1, length-delimited).
pub fn may_be_otlp_proto(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x0a) && bytes.len() > 2
}

/// The records of an `otlp_json` batch, one JSON line each, appended to `out`.
pub fn split_json(line: &str, out: &mut Vec<String>) -> Result<(), ParseError> {
    let request: JsonRequest = serde_json::from_str(line).map_err(|_| ParseError::MalformedJson)?;
    split(request.into_proto(), out);
    Ok(())
}

/// The records of an `otlp_proto` batch, one JSON line each, appended to `out`.
pub fn split_proto(bytes: &[u8], out: &mut Vec<String>) -> Result<(), ParseError> {
    use prost::Message;
    let request =
        proto::ExportLogsServiceRequest::decode(bytes).map_err(|_| ParseError::Unrecognised)?;
    if request.resource_logs.is_empty() {
        return Err(ParseError::Unrecognised);
    }
    split(request, out);
    Ok(())
}

/// One flat JSON record per log record (both encodings end here).
fn split(request: proto::ExportLogsServiceRequest, out: &mut Vec<String>) {
    for rl in request.resource_logs {
        let mut resource = Map::new();
        for kv in rl.resource.map(|r| r.attributes).unwrap_or_default() {
            if let Some(v) = kv.value.and_then(proto::AnyValue::into_value) {
                resource.insert(kv.key, v);
            }
        }
        for sl in rl.scope_logs {
            out.extend(sl.log_records.into_iter().map(|r| flat(&resource, r)));
        }
    }
}

/// A log record as one flat JSON object: its resource's attributes as dotted keys
/// (`service.name`, `k8s.pod.name`), its own under `attributes`, ids in hex, and the
/// body as a string (a structured body is the app's record: read as a JSON payload).
fn flat(resource: &Map<String, Value>, r: proto::LogRecord) -> String {
    let mut o = resource.clone();
    let time = [r.time_unix_nano, r.observed_time_unix_nano]
        .into_iter()
        .find(|t| *t > 0);
    if let Some(t) = time {
        o.insert("timeUnixNano".into(), t.into());
    }
    if r.severity_number > 0 {
        o.insert("severityNumber".into(), r.severity_number.into());
    }
    if !r.severity_text.is_empty() {
        o.insert("severityText".into(), r.severity_text.into());
    }
    match r.body.and_then(proto::AnyValue::into_value) {
        Some(Value::String(s)) => {
            o.insert("body".into(), s.into());
        }
        Some(other) => {
            o.insert("body".into(), other.to_string().into());
        }
        None => {}
    }
    if !r.trace_id.is_empty() {
        o.insert("traceId".into(), hex::encode(&r.trace_id).into());
    }
    if !r.span_id.is_empty() {
        o.insert("spanId".into(), hex::encode(&r.span_id).into());
    }
    let attributes = r
        .attributes
        .into_iter()
        .filter_map(|kv| Some((kv.key, kv.value?.into_value()?)))
        .collect();
    o.insert("attributes".into(), Value::Object(attributes));
    Value::Object(o).to_string()
}

// ------------------------------------------------------------------ otlp_json

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest {
    #[serde(default)]
    resource_logs: Vec<JsonResourceLogs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonResourceLogs {
    resource: Option<JsonResource>,
    #[serde(default)]
    scope_logs: Vec<JsonScopeLogs>,
}

#[derive(Deserialize)]
struct JsonResource {
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonScopeLogs {
    #[serde(default)]
    log_records: Vec<JsonLogRecord>,
}

/// A 64-bit integer the Collector writes as a string (or a number).
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonInt {
    Num(u64),
    Neg(i64),
    Str(String),
}

impl JsonInt {
    fn as_u64(&self) -> Option<u64> {
        match self {
            JsonInt::Num(n) => Some(*n),
            JsonInt::Neg(_) => None,
            JsonInt::Str(s) => s.parse().ok(),
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            JsonInt::Num(n) => i64::try_from(*n).ok(),
            JsonInt::Neg(n) => Some(*n),
            JsonInt::Str(s) => s.parse().ok(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonLogRecord {
    time_unix_nano: Option<JsonInt>,
    observed_time_unix_nano: Option<JsonInt>,
    severity_number: Option<JsonInt>,
    severity_text: Option<String>,
    body: Option<JsonAny>,
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
    trace_id: Option<String>,
    span_id: Option<String>,
}

#[derive(Deserialize)]
struct JsonKeyValue {
    key: String,
    value: Option<JsonAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonAny {
    string_value: Option<String>,
    int_value: Option<JsonInt>,
    double_value: Option<f64>,
    bool_value: Option<bool>,
    kvlist_value: Option<JsonKvList>,
}

#[derive(Deserialize)]
struct JsonKvList {
    #[serde(default)]
    values: Vec<JsonKeyValue>,
}

impl JsonRequest {
    /// The same batch as the protobuf messages (ids from hex to bytes, string integers
    /// to numbers), so that one path reads both encodings.
    fn into_proto(self) -> proto::ExportLogsServiceRequest {
        let kvs = |list: Vec<JsonKeyValue>| -> Vec<proto::KeyValue> {
            list.into_iter().map(JsonKeyValue::into_proto).collect()
        };
        proto::ExportLogsServiceRequest {
            resource_logs: self
                .resource_logs
                .into_iter()
                .map(|rl| proto::ResourceLogs {
                    resource: rl.resource.map(|r| proto::Resource {
                        attributes: kvs(r.attributes),
                    }),
                    scope_logs: rl
                        .scope_logs
                        .into_iter()
                        .map(|sl| proto::ScopeLogs {
                            log_records: sl
                                .log_records
                                .into_iter()
                                .map(|r| proto::LogRecord {
                                    time_unix_nano: r
                                        .time_unix_nano
                                        .and_then(|n| n.as_u64())
                                        .unwrap_or(0),
                                    observed_time_unix_nano: r
                                        .observed_time_unix_nano
                                        .and_then(|n| n.as_u64())
                                        .unwrap_or(0),
                                    severity_number: r
                                        .severity_number
                                        .and_then(|n| n.as_u64())
                                        .and_then(|n| i32::try_from(n).ok())
                                        .unwrap_or(0),
                                    severity_text: r.severity_text.unwrap_or_default(),
                                    body: r.body.map(JsonAny::into_proto),
                                    attributes: kvs(r.attributes),
                                    trace_id: hex::decode(r.trace_id.unwrap_or_default())
                                        .unwrap_or_default(),
                                    span_id: hex::decode(r.span_id.unwrap_or_default())
                                        .unwrap_or_default(),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl JsonKeyValue {
    fn into_proto(self) -> proto::KeyValue {
        proto::KeyValue {
            key: self.key,
            value: self.value.map(JsonAny::into_proto),
        }
    }
}

impl JsonAny {
    fn into_proto(self) -> proto::AnyValue {
        use proto::Any;
        let value = if let Some(s) = self.string_value {
            Some(Any::String(s))
        } else if let Some(n) = self.int_value.and_then(|n| n.as_i64()) {
            Some(Any::Int(n))
        } else if let Some(f) = self.double_value {
            Some(Any::Double(f))
        } else if let Some(b) = self.bool_value {
            Some(Any::Bool(b))
        } else {
            self.kvlist_value.map(|list| {
                Any::KvList(proto::KeyValueList {
                    values: list
                        .values
                        .into_iter()
                        .map(JsonKeyValue::into_proto)
                        .collect(),
                })
            })
        };
        proto::AnyValue { value }
    }
}

// ------------------------------------------------------------------ otlp_proto

/// The messages of `opentelemetry/proto/collector/logs/v1` and `logs/v1` that logheal
/// reads, with their field numbers.
mod proto {
    use serde_json::Value;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        #[prost(int32, tag = "2")]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(bytes = "vec", tag = "9")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "10")]
        pub span_id: Vec<u8>,
        #[prost(fixed64, tag = "11")]
        pub observed_time_unix_nano: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Any", tags = "1, 2, 3, 4, 6")]
        pub value: Option<Any>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Any {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
        #[prost(message, tag = "6")]
        KvList(KeyValueList),
    }

    impl AnyValue {
        pub fn into_value(self) -> Option<Value> {
            Some(match self.value? {
                Any::String(s) => s.into(),
                Any::Bool(b) => b.into(),
                Any::Int(n) => n.into(),
                Any::Double(f) => f.into(),
                Any::KvList(list) => Value::Object(
                    list.values
                        .into_iter()
                        .filter_map(|kv| Some((kv.key, kv.value?.into_value()?)))
                        .collect(),
                ),
            })
        }
    }

    /// Encodes a request (tests and benches build `otlp_proto` fixtures with it).
    pub fn encode(request: &ExportLogsServiceRequest) -> Vec<u8> {
        prost::Message::encode_to_vec(request)
    }
}

pub use proto::{
    encode as encode_proto, Any as ProtoAny, AnyValue as ProtoAnyValue,
    ExportLogsServiceRequest as ProtoRequest, KeyValue as ProtoKeyValue,
    LogRecord as ProtoLogRecord, Resource as ProtoResource, ResourceLogs as ProtoResourceLogs,
    ScopeLogs as ProtoScopeLogs,
};
