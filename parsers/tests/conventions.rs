//! Every JSON convention logheal reads with no configuration, plus logfmt, header
//! patterns, field overrides and bad input.

use logheal_parsers::{EventTime, FieldNames, Level, LineParser, LogEvent, ParseError};
use std::borrow::Cow;

const T: &str = "2026-11-21T10:15:00.250Z";

fn t() -> EventTime {
    logheal_parsers::time::parse_timestamp(T).unwrap()
}

fn parser() -> LineParser {
    LineParser::new(&FieldNames::default(), None, 2026).unwrap()
}

fn parse(line: &str) -> Result<LogEvent<'_>, ParseError> {
    parser().parse(line)
}

/// The fields every convention below must yield.
fn assert_core(e: &LogEvent<'_>) {
    assert_eq!(e.ts, Some(t()), "ts");
    assert_eq!(e.service.as_deref(), Some("payment"), "service");
    assert_eq!(e.level, Level::Error, "level");
    assert_eq!(e.status, Some(503), "status");
    assert_eq!(e.trace_id.as_deref(), Some("4bf92f3577b34da6"), "trace_id");
    assert_eq!(e.span_id.as_deref(), Some("00f067aa0ba902b7"), "span_id");
    assert_eq!(e.message, "upstream connect error", "message");
}

#[test]
fn flat_convention() {
    let line = r#"{"ts":"2026-11-21T10:15:00.250Z","level":"error","service":"payment","trace_id":"4bf92f3577b34da6","span_id":"00f067aa0ba902b7","status":503,"msg":"upstream connect error"}"#;
    let e = parse(line).unwrap();
    assert_core(&e);
    assert!(
        matches!(e.message, Cow::Borrowed(_)),
        "unescaped strings borrow"
    );
}

#[test]
fn flat_aliases_time_timestamp_message() {
    for key in ["time", "timestamp"] {
        let line = format!(
            r#"{{"{key}":"{T}","level":"ERROR","service":"payment","trace_id":"4bf92f3577b34da6","span_id":"00f067aa0ba902b7","status":"503","message":"upstream connect error"}}"#
        );
        assert_core(&parse(&line).unwrap());
    }
}

#[test]
fn elastic_common_schema_nested_and_dotted() {
    let nested = r#"{"@timestamp":"2026-11-21T10:15:00.250Z","log":{"level":"error"},"service":{"name":"payment"},"trace":{"id":"4bf92f3577b34da6"},"span":{"id":"00f067aa0ba902b7"},"http":{"request":{"method":"GET"},"response":{"status_code":503}},"message":"upstream connect error"}"#;
    assert_core(&parse(nested).unwrap());
    let dotted = r#"{"@timestamp":"2026-11-21T10:15:00.250Z","log.level":"error","service.name":"payment","trace.id":"4bf92f3577b34da6","span.id":"00f067aa0ba902b7","http.response.status_code":503,"message":"upstream connect error"}"#;
    assert_core(&parse(dotted).unwrap());
}

#[test]
fn opentelemetry_log_data_model() {
    let ns = t().nanos();
    let line = format!(
        r#"{{"time_unix_nano":{ns},"severity_text":"ERROR","severity_number":17,"resource":{{"service.name":"payment","host.name":"n1"}},"trace_id":"4bf92f3577b34da6","span_id":"00f067aa0ba902b7","attributes":{{"http.response.status_code":503,"url.path":"/pay"}},"body":"upstream connect error"}}"#
    );
    assert_core(&parse(&line).unwrap());
    let with_resource_attributes = format!(
        r#"{{"timestamp":"{ns}","severity_text":"ERROR","resource":{{"attributes":{{"service.name":"payment"}}}},"trace_id":"4bf92f3577b34da6","span_id":"00f067aa0ba902b7","attributes":{{"http":{{"response":{{"status_code":"503"}}}}}},"body":{{"stringValue":"upstream connect error"}}}}"#
    );
    assert_core(&parse(&with_resource_attributes).unwrap());
}

#[test]
fn epoch_timestamps_in_every_unit() {
    let secs = t().nanos() as f64 / 1e9;
    let ms = t().nanos() / 1_000_000;
    let us = t().nanos() / 1_000;
    for ts in [
        format!("{secs}"),
        ms.to_string(),
        us.to_string(),
        t().nanos().to_string(),
    ] {
        let line = format!(r#"{{"ts":{ts},"service":"a","msg":"x"}}"#);
        assert_eq!(parse(&line).unwrap().ts, Some(t()), "{ts}");
    }
}

#[test]
fn escaped_strings_are_unescaped() {
    let e = parse(r#"{"ts":1,"service":"pay\u006dent","msg":"say \"hi\"\n"}"#).unwrap();
    assert_eq!(e.service.as_deref(), Some("payment"));
    assert_eq!(e.message, "say \"hi\"\n");
}

#[test]
fn logfmt() {
    let line = r#"ts=2026-11-21T10:15:00.250Z level=error service=payment trace_id=4bf92f3577b34da6 span_id=00f067aa0ba902b7 status=503 msg="upstream connect error" empty= extra"#;
    assert_core(&parse(line).unwrap());
}

#[test]
fn header_pattern_loghub_style() {
    let mut p = LineParser::new(
        &FieldNames::default(),
        Some("<Date> <Time> <Pid> <Level> <Component>: <Content>"),
        2026,
    )
    .unwrap();
    let e = p
        .parse("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38 terminating")
        .unwrap();
    assert_eq!(e.level, Level::Info);
    assert_eq!(e.service.as_deref(), Some("dfs.DataNode$PacketResponder"));
    assert_eq!(e.message, "PacketResponder 1 for block blk_38 terminating");
    assert_eq!(e.ts.unwrap().to_rfc3339(), "2008-11-09T20:36:15.000Z");
    assert_eq!(
        p.parse("not a header line"),
        Err(ParseError::HeaderMismatch)
    );

    let mut linux = LineParser::new(
        &FieldNames::default(),
        Some(r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>"),
        2026,
    )
    .unwrap();
    let e = linux
        .parse(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0",
        )
        .unwrap();
    assert_eq!(e.service.as_deref(), Some("sshd(pam_unix)"));
    assert_eq!(e.message, "authentication failure; logname= uid=0");
    assert_eq!(e.ts.unwrap().to_rfc3339(), "2026-06-14T15:16:01.000Z");
}

#[test]
fn bad_header_formats_are_rejected() {
    let names = FieldNames::default();
    assert!(LineParser::new(&names, Some("<Date> <Time"), 2026).is_err());
    assert!(LineParser::new(&names, Some("<Date> <Level>"), 2026).is_err());
    assert!(LineParser::new(&names, Some("<A> <A> <Content>"), 2026).is_err());
}

#[test]
fn configured_field_names_take_precedence() {
    let custom: FieldNames =
        serde_json::from_str(r#"{"service":["app"],"trace_id":["req.trace"]}"#).unwrap();
    let mut p = LineParser::new(&FieldNames::with_overrides(&custom), None, 2026).unwrap();
    let e = p
        .parse(r#"{"ts":1,"service":"ignored","app":"payment","req":{"trace":"t1"}}"#)
        .unwrap();
    assert_eq!(e.service.as_deref(), Some("payment"));
    assert_eq!(e.trace_id.as_deref(), Some("t1"));
}

#[test]
fn extra_fields_are_captured_only_when_asked() {
    let mut names = FieldNames::default();
    let idx = names.extra_index("http.request.method");
    let mut p = LineParser::new(&names, None, 2026).unwrap();
    let e = p
        .parse(r#"{"ts":1,"http":{"request":{"method":"POST"}}}"#)
        .unwrap();
    assert_eq!(e.extra(idx), Some("POST"));
    let e = parse(r#"{"ts":1,"http":{"request":{"method":"POST"}}}"#).unwrap();
    assert!(e.extra.is_empty());
}

#[test]
fn bad_input_is_an_error_with_a_reason() {
    let cases = [
        ("", ParseError::Empty),
        ("   \r\n", ParseError::Empty),
        (r#"{"ts":1,"msg":"unterminated"#, ParseError::MalformedJson),
        (r#"{"ts":1} trailing"#, ParseError::MalformedJson),
        ("{[1,2]}", ParseError::MalformedJson),
        ("just some words", ParseError::Unrecognised),
        (
            r#"{"ts":"yesterday","msg":"x"}"#,
            ParseError::InvalidTimestamp,
        ),
        (r#"{"ts":true,"msg":"x"}"#, ParseError::InvalidTimestamp),
        (r#"{"ts":-5,"msg":"x"}"#, ParseError::InvalidTimestamp),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line).err(), Some(want), "{line:?}");
    }
}

#[test]
fn a_status_that_is_not_an_http_code_is_no_status_never_a_lost_event() {
    for line in [
        r#"{"ts":1,"status":"abc"}"#,
        r#"{"ts":1,"status":"error"}"#,
        r#"{"ts":1,"status":"-"}"#,
        r#"{"ts":1,"status":99999}"#,
        r#"{"ts":1,"status":503.5}"#,
        r#"{"ts":1,"status":[503]}"#,
        r#"{"ts":1,"status":{"code":2}}"#,
        r#"{"ts":1,"response_code":0}"#,
        "ts=1 status=oops",
    ] {
        let e = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!((e.ts.is_some(), e.status), (true, None), "{line}");
    }
    // A list of upstream attempts: the last one counts.
    assert_eq!(
        parse(r#"{"ts":1,"status":"502, 503"}"#).unwrap().status,
        Some(503)
    );
    assert_eq!(
        parse(r#"{"ts":1,"status":"503"}"#).unwrap().status,
        Some(503)
    );
}

#[test]
fn missing_and_odd_fields_are_absent_not_errors() {
    let e =
        parse(r#"{"msg":"no time","service":"","trace_id":null,"status":null,"level":"chatty"}"#)
            .unwrap();
    assert_eq!(e.ts, None);
    assert_eq!(e.service, None);
    assert_eq!(e.trace_id, None);
    assert_eq!(e.status, None);
    assert_eq!(e.level, Level::Unknown);
    let e = parse(r#"{"ts":1,"trace_id":12345,"service":{"name":"svc","version":"1"}}"#).unwrap();
    assert_eq!(e.trace_id.as_deref(), Some("12345"));
    assert_eq!(e.service.as_deref(), Some("svc"));
}

#[test]
fn deep_nesting_and_huge_lines_do_not_crash() {
    let deep = format!(
        r#"{{"ts":1,"x":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(parse(&deep).unwrap().ts.unwrap().nanos(), 1_000_000_000);
    let unbalanced = format!(r#"{{"ts":1,"x":{}"#, "[".repeat(100_000));
    assert_eq!(parse(&unbalanced).err(), Some(ParseError::MalformedJson));
    let huge_msg = "a".repeat(10 << 20);
    let line = format!(r#"{{"ts":1,"service":"s","msg":"{huge_msg}"}}"#);
    assert_eq!(parse(&line).unwrap().message.len(), 10 << 20);
}
