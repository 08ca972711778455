//! The OTel Collector's default Kafka encoding, `otlp_proto`: one binary message holds a
//! batch of records of several resources; each record is an event of its own. A message
//! that is not a batch is a counted skip, and the records around it are kept.

use logheal_parsers::otlp::{
    encode_proto, ProtoAny, ProtoAnyValue, ProtoKeyValue, ProtoLogRecord, ProtoRequest,
    ProtoResource, ProtoResourceLogs, ProtoScopeLogs,
};
use logheal_pipeline::{Engine, EngineConfig, Record};

fn text(s: &str) -> Option<ProtoAnyValue> {
    Some(ProtoAnyValue {
        value: Some(ProtoAny::String(s.into())),
    })
}

fn record(ns: u64, trace: [u8; 16], status: i64, body: &str) -> ProtoLogRecord {
    ProtoLogRecord {
        time_unix_nano: ns,
        severity_number: 17,
        body: text(body),
        attributes: vec![ProtoKeyValue {
            key: "http.response.status_code".into(),
            value: Some(ProtoAnyValue {
                value: Some(ProtoAny::Int(status)),
            }),
        }],
        trace_id: trace.to_vec(),
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        ..ProtoLogRecord::default()
    }
}

fn resource(service: &str, records: Vec<ProtoLogRecord>) -> ProtoResourceLogs {
    ProtoResourceLogs {
        resource: Some(ProtoResource {
            attributes: vec![ProtoKeyValue {
                key: "service.name".into(),
                value: text(service),
            }],
        }),
        scope_logs: vec![ProtoScopeLogs {
            log_records: records,
        }],
    }
}

#[test]
fn a_protobuf_batch_is_many_events() {
    let t0 = 1_773_482_400_000_000_000u64;
    let trace = [0xab; 16];
    let batch = ProtoRequest {
        resource_logs: vec![
            resource("payment", vec![record(t0, trace, 503, "connect refused")]),
            resource(
                "checkout",
                vec![
                    record(t0 + 3_000_000, trace, 503, "payment returned 503"),
                    record(t0 + 4_000_000, [0xcd; 16], 200, "ok"),
                ],
            ),
            resource(
                "gateway",
                vec![record(t0 + 6_000_000, trace, 503, "checkout returned 503")],
            ),
        ],
    };
    let bytes = encode_proto(&batch);
    let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap();
    engine.push_record(0, b"\x0a\x03not a batch at all");
    engine.push_record(0, &bytes);
    engine.finish();
    let stats = engine.stats();
    assert_eq!(stats.lines, 2);
    assert_eq!(stats.batched, 4, "every record of the batch");
    assert_eq!(
        stats.parsed, 4,
        "the four records; the line that was not a batch is skipped"
    );
    assert_eq!(stats.skipped_total(), 1, "{stats}");
    let confirmed: Vec<String> = engine
        .take_records()
        .filter_map(|r| match r {
            Record::Transition {
                to: logheal_pipeline::incident::IncidentState::Confirmed,
                key,
                ..
            } => Some(key["root_service"].as_str().unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(confirmed, ["payment"]);
}

#[test]
fn a_malformed_otlp_json_batch_is_a_counted_skip_and_the_next_line_is_read() {
    let mut engine = Engine::new(logheal_rules::builtin(), &EngineConfig::default()).unwrap();
    engine.push_line(br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"#);
    engine.push_line(br#"{"resourceLogs":"not a list"}"#);
    engine.push_line(br#"{"ts":"2026-03-14T10:00:00Z","service":"a","msg":"fine"}"#);
    let stats = engine.stats();
    assert_eq!(stats.lines, 3);
    assert_eq!(
        stats.skipped(logheal_pipeline::SkipReason::Parse(
            logheal_parsers::ParseError::MalformedJson
        )),
        2
    );
    assert_eq!(stats.parsed, 1);
}
