//! Property tests: no input makes the parser panic, and what the JSON reader extracts
//! round-trips through serialisation.

use logheal_parsers::{FieldNames, LineParser};
use proptest::prelude::*;

fn parsers() -> Vec<LineParser> {
    let names = FieldNames::default();
    vec![
        LineParser::new(&names, None, 2026).unwrap(),
        LineParser::new(
            &names,
            Some("<Date> <Time> <Level> <Component>: <Content>"),
            2026,
        )
        .unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(line in "\\PC{0,300}") {
        for mut p in parsers() {
            let _ = p.parse(&line);
        }
    }

    #[test]
    fn json_ish_and_logfmt_ish_never_panic(line in r#"[{}\[\]":,=a-z0-9 .\\-]{0,200}"#) {
        for mut p in parsers() {
            let _ = p.parse(&line);
            let _ = p.parse(&format!("{{{line}"));
        }
    }

    #[test]
    fn json_fields_round_trip(
        service in "[a-z][a-z0-9-]{0,20}",
        trace in "[0-9a-f]{16,32}",
        status in 100u16..600,
        msg in "\\PC{0,80}",
        ms in 1_000_000_000_000i64..4_000_000_000_000,
    ) {
        let line = serde_json::json!({
            "ts": ms, "service": service, "trace_id": trace, "status": status, "msg": msg,
        }).to_string();
        let mut p = LineParser::new(&FieldNames::default(), None, 2026).unwrap();
        let e = p.parse(&line).unwrap();
        prop_assert_eq!(e.ts.unwrap().nanos(), ms * 1_000_000);
        prop_assert_eq!(e.service.as_deref(), Some(service.as_str()));
        prop_assert_eq!(e.trace_id.as_deref(), Some(trace.as_str()));
        prop_assert_eq!(e.status, Some(status));
        prop_assert_eq!(e.message.as_ref(), msg.as_str());
    }

    #[test]
    fn logfmt_quoted_values_round_trip(value in "[ -~]{0,40}") {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        let line = format!(r#"ts=1 service=s msg="{escaped}""#);
        let mut p = LineParser::new(&FieldNames::default(), None, 2026).unwrap();
        let e = p.parse(&line).unwrap();
        prop_assert_eq!(e.message.as_ref(), value.as_str());
    }

    #[test]
    fn text_lines_and_payloads_never_panic(
        head in proptest::sample::select(vec![
            "", "2026-03-14T10:00:00Z ERROR ", "[2026-03-14T10:00:00.000Z] \"GET /x HTTP/1.1\" ",
            "10.0.0.1 - - [14/Mar/2026:10:00:02 +0000] \"GET / HTTP/1.1\" ", "E0314 10:00:02.000000 1 a.go:1] ",
            "17:11:21.191 INFO  a.B#1 TraceID: ", "00-", "[TID:", "[SW_CTX:[", "status: ", "POST /", "trace_id=",
        ]),
        body in "\\PC{0,120}",
        tail in proptest::sample::select(vec!["", "]", "\"", " - x", " : y", "=", "-00-", " 503 Service Unavailable"]),
    ) {
        let line = format!("{head}{body}{tail}");
        let mut p = LineParser::new(&FieldNames::default(), None, 2026).unwrap();
        let _ = p.parse(&line);
        let envelope = serde_json::json!({"time": "2026-03-14T10:00:00Z", "log": line}).to_string();
        prop_assert!(p.parse(&envelope).is_ok());
    }
}
