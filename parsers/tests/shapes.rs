//! Records as shippers put them on Kafka, and the text lines inside them: our own fixture
//! lines, written from the formats described in `REAL-LOGS.md` (Fluent Bit, Vector,
//! Filebeat, Envoy/Istio, nginx, Spring/Sleuth/Micrometer, OTel MDC, Python, klog,
//! SkyWalking, W3C traceparent, B3, gRPC codes).

use logheal_parsers::{FieldNames, Level, LineParser, LogEvent};

fn parser() -> LineParser {
    LineParser::new(&FieldNames::default(), None, 2026).unwrap()
}

fn parse(line: &str) -> LogEvent<'static> {
    let mut p = parser();
    let e = p.parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    LogEvent {
        ts: e.ts,
        service: e.service.map(|s| s.into_owned().into()),
        level: e.level,
        status: e.status,
        trace_id: e.trace_id.map(|s| s.into_owned().into()),
        span_id: e.span_id.map(|s| s.into_owned().into()),
        parent_span_id: None,
        request_id: e.request_id.map(|s| s.into_owned().into()),
        callee: e.callee.map(|s| s.into_owned().into()),
        message: e.message.into_owned().into(),
        extra: Vec::new(),
    }
}

fn time(e: &LogEvent) -> String {
    e.ts.expect("a time").to_rfc3339()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn fluent_bit_with_a_logfmt_line() {
    let e = parse(&format!(
        r#"{{"@timestamp":1773482402.017,"time":"2026-03-14T10:00:02.017345678Z","stream":"stderr","_p":"F","log":"ts=2026-03-14T10:00:02.015Z level=error msg=\"upstream connect error\" status=503 trace_id={TRACE}","kubernetes":{{"pod_name":"payment-6d8f9c7b5d-qx2lp","namespace_name":"shop","labels":{{"app.kubernetes.io/name":"payment","pod-template-hash":"6d8f9c7b5d"}},"container_name":"server"}}}}"#
    ));
    assert_eq!(e.service.as_deref(), Some("payment"));
    assert_eq!(e.status, Some(503));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.trace_id.as_deref(), Some(TRACE));
    assert_eq!(time(&e), "2026-03-14T10:00:02.017Z", "the envelope's time");
    assert_eq!(e.message, "upstream connect error");
}

#[test]
fn vector_with_the_app_json_as_a_string() {
    let e = parse(&format!(
        r#"{{"file":"/var/log/pods/shop_checkout-abc/app/0.log","kubernetes":{{"container_name":"app","pod_labels":{{"app":"checkout"}},"pod_name":"checkout-5c7d8f9b6-z8k2m","pod_namespace":"shop"}},"message":"{{\"time\":\"2026-03-14T10:00:02.021Z\",\"level\":\"ERROR\",\"msg\":\"payment returned 503\",\"status\":503,\"traceId\":\"{}\"}}","source_type":"kubernetes_logs","stream":"stdout","timestamp":"2026-03-14T10:00:02.030Z"}}"#,
        TRACE.to_uppercase()
    ));
    assert_eq!(e.service.as_deref(), Some("checkout"));
    assert_eq!(e.status, Some(503));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.trace_id.as_deref(), Some(TRACE), "case folded");
    assert_eq!(time(&e), "2026-03-14T10:00:02.021Z", "the app's time wins");
    assert_eq!(e.message, "payment returned 503");
}

#[test]
fn filebeat_with_de_dotted_labels_and_an_ecs_payload() {
    let e = parse(&format!(
        r#"{{"@timestamp":"2026-03-14T10:00:02.500Z","@metadata":{{"beat":"filebeat","type":"_doc","version":"8.7.1"}},"message":"{{\"@timestamp\":\"2026-03-14T10:00:02.025Z\",\"log.level\":\"error\",\"message\":\"checkout failed\",\"http.response.status_code\":503,\"trace.id\":\"{TRACE}\"}}","input":{{"type":"container"}},"kubernetes":{{"namespace":"shop","pod":{{"name":"gateway-7b9c6d5f4-m2n3b"}},"labels":{{"app_kubernetes_io/name":"gateway"}},"container":{{"name":"gateway"}}}},"ecs":{{"version":"8.0.0"}}}}"#
    ));
    assert_eq!(e.service.as_deref(), Some("gateway"));
    assert_eq!(e.status, Some(503));
    assert_eq!(e.trace_id.as_deref(), Some(TRACE));
    assert_eq!(time(&e), "2026-03-14T10:00:02.025Z");
}

#[test]
fn service_from_kubernetes_metadata_in_order() {
    let container = parse(
        r#"{"time":"2026-03-14T10:00:00Z","log":"hello","kubernetes":{"container_name":"search","pod_name":"search-7d9f8b6c5d-x2x7q"}}"#,
    );
    assert_eq!(container.service.as_deref(), Some("search"));
    let sidecar = parse(
        r#"{"time":"2026-03-14T10:00:00Z","log":"hello","kubernetes":{"container_name":"istio-proxy","pod_name":"search-7d9f8b6c5d-x2x7q"}}"#,
    );
    assert_eq!(
        sidecar.service.as_deref(),
        Some("search"),
        "not the sidecar: the pod's workload"
    );
    let istio = parse(
        r#"{"time":"2026-03-14T10:00:00Z","log":"hello","kubernetes":{"container_name":"istio-proxy","labels":{"service.istio.io/canonical-name":"ratings"}}}"#,
    );
    assert_eq!(istio.service.as_deref(), Some("ratings"));
    let own = parse(
        r#"{"time":"2026-03-14T10:00:00Z","log":"{\"service\":\"cart\",\"msg\":\"x\"}","kubernetes":{"labels":{"app":"cart-v2"}}}"#,
    );
    assert_eq!(
        own.service.as_deref(),
        Some("cart"),
        "the payload's own name wins"
    );
}

#[test]
fn spring_boot_3_with_micrometer_trace_span() {
    let e = parse(&format!(
        r#"{{"time":"2026-03-14T10:00:02.031Z","log":"2026-03-14T10:00:02.030Z ERROR 1 --- [checkout] [nio-8080-exec-1] [{}-00f067aa0ba902b7] c.s.c.CheckoutController : Payment call failed with 503","kubernetes":{{"labels":{{"app":"checkout"}}}}}}"#,
        TRACE.to_uppercase()
    ));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.trace_id.as_deref(), Some(TRACE));
    assert_eq!(e.span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(e.message, "Payment call failed with 503");
    let plain = parse(
        "2026-03-14T10:00:02.030Z  INFO 34208 --- [myapp] [           main] o.s.b.d.f.MyApplication : Started MyApplication",
    );
    assert_eq!(plain.service.as_deref(), Some("myapp"));
    assert_eq!(plain.level, Level::Info);
    assert_eq!(time(&plain), "2026-03-14T10:00:02.030Z");
    assert_eq!(plain.message, "Started MyApplication");
}

#[test]
fn sleuth_brackets_give_app_trace_and_span() {
    let e = parse(
        "2026-03-14 10:00:02.561  WARN [service1,2485ec27856c56f4,2485ec27856c56f5,true] 68058 --- [nio-8081-exec-1] i.s.c.s.d.s.Application   : Retrying the call",
    );
    assert_eq!(e.service.as_deref(), Some("service1"));
    assert_eq!(e.trace_id.as_deref(), Some("2485ec27856c56f4"));
    assert_eq!(e.span_id.as_deref(), Some("2485ec27856c56f5"));
    assert_eq!(e.level, Level::Warn);
    assert_eq!(e.message, "Retrying the call");
}

#[test]
fn mdc_pairs_and_colon_ids_in_logback_lines() {
    let e = parse(&format!(
        "2026-03-14 10:00:02,125 ERROR [main] c.e.Pay - trace_id={TRACE} span_id=00f067aa0ba902b7 trace_flags=01 charge failed status=503"
    ));
    assert_eq!(e.trace_id.as_deref(), Some(TRACE));
    assert_eq!(e.status, Some(503));
    assert_eq!(time(&e), "2026-03-14T10:00:02.125Z");
    // TrainTicket's logback pattern (a time of day only: the envelope's time counts).
    let e = parse(&format!(
        r#"{{"@timestamp":1674983481.19,"log":"17:11:21.191 ERROR v.c.VerifyCodeController#54 TraceID: {TRACE} SpanID: f6de2c1b4a397289 [verifyCode][verify result: false]","time":"2023-01-29T09:11:21.191775534Z","kubernetes":{{"labels":{{"app":"ts-verification-code-service"}},"container_name":"server"}}}}"#
    ));
    assert_eq!(e.service.as_deref(), Some("ts-verification-code-service"));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.trace_id.as_deref(), Some(TRACE));
    assert_eq!(e.span_id.as_deref(), Some("f6de2c1b4a397289"));
    assert_eq!(time(&e), "2023-01-29T09:11:21.191Z");
}

#[test]
fn python_logging_with_otel_fields() {
    let e = parse(&format!(
        "2026-03-14 10:00:02,250 ERROR [app.pay] [pay.py:42] [trace_id={TRACE} span_id=00f067aa0ba902b7 resource.service.name=payment trace_sampled=True] - card processor unavailable"
    ));
    assert_eq!(e.service.as_deref(), Some("payment"));
    assert_eq!(e.trace_id.as_deref(), Some(TRACE));
    assert_eq!(e.level, Level::Error);
    assert_eq!(time(&e), "2026-03-14T10:00:02.250Z");
    let none = parse("2026-03-14 10:00:02,250 INFO [app] [a.py:1] [trace_id=0 span_id=0 resource.service.name=payment trace_sampled=False] - idle");
    assert_eq!(none.trace_id, None, "\"0\" means no trace");
}

#[test]
fn klog_letter_is_the_level() {
    let e = parse(
        r#"{"timestamp":"2026-10-15T11:01:46.499555308Z","message":"E1015 11:01:46.499073       1 main.go:39] error getting server version","kubernetes":{"container_name":"provisioner"}}"#,
    );
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.service.as_deref(), Some("provisioner"));
    assert_eq!(e.message, "error getting server version");
    assert_eq!(time(&e), "2026-10-15T11:01:46.499Z");
}

#[test]
fn skywalking_ids() {
    let e = parse(
        "2026-03-14 10:00:02.000 [TID:5f3e8c2a9b1d4e7f.71.17130001] ERROR c.e.Order - failed",
    );
    assert_eq!(e.trace_id.as_deref(), Some("5f3e8c2a9b1d4e7f.71.17130001"));
    let e = parse("2026-03-14 10:00:02.000 [SW_CTX:[order,order-1@10.0.0.7,9a8b7c6d5e4f.12.1713,9a8b7c6d5e4f.12.1714,0]] ERROR c.e.Order - failed");
    assert_eq!(e.service.as_deref(), Some("order"));
    assert_eq!(e.trace_id.as_deref(), Some("9a8b7c6d5e4f.12.1713"));
}

#[test]
fn envoy_and_istio_access_lines() {
    let default = parse(
        r#"[2026-03-14T10:00:02.409Z] "GET /status/418 HTTP/1.1" 503 UH no_healthy_upstream - "-" 0 19 0 - "-" "curl/8.5.0" "84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "-" outbound|8000||httpbin.foo.svc.cluster.local - 10.0.45.184:8000 10.44.1.23:46520 - default"#,
    );
    assert_eq!(default.status, Some(503));
    assert_eq!(
        default.request_id.as_deref(),
        Some("84961386-6d84-929d-98bd-c5aee93b5c88")
    );
    assert_eq!(
        default.callee.as_deref(),
        Some("httpbin"),
        "the upstream cluster"
    );
    assert_eq!(time(&default), "2026-03-14T10:00:02.409Z");
    let plain_envoy = parse(
        r#"[2026-03-14T10:00:02.409Z] "POST /api/pay HTTP/2" 200 - 120 45 12 11 "10.0.0.1" "okhttp/4" "0b6c3d4e-1f2a-4b5c-8d9e-0a1b2c3d4e5f" "payment:8080" "10.44.2.7:8080""#,
    );
    assert_eq!(plain_envoy.status, Some(200));
    assert_eq!(
        plain_envoy.request_id.as_deref(),
        Some("0b6c3d4e-1f2a-4b5c-8d9e-0a1b2c3d4e5f")
    );
    // Istio's JSON encoding, inside Fluent Bit's envelope, on the sidecar container.
    let json = parse(
        r#"{"time":"2026-03-14T10:00:02.410Z","log":"{\"start_time\":\"2026-03-14T10:00:02.409Z\",\"method\":\"GET\",\"path\":\"/api/pay\",\"response_code\":503,\"response_flags\":\"UF\",\"request_id\":\"3a7cbcc1-af72-47fb-bbac-a7672951f50f\",\"authority\":\"payment:8080\",\"upstream_cluster\":\"outbound|8080||payment.shop.svc.cluster.local\"}","kubernetes":{"container_name":"istio-proxy","labels":{"app":"checkout"}}}"#,
    );
    assert_eq!(json.service.as_deref(), Some("checkout"));
    assert_eq!(json.callee.as_deref(), Some("payment"));
    assert_eq!(json.status, Some(503));
    assert_eq!(
        json.request_id.as_deref(),
        Some("3a7cbcc1-af72-47fb-bbac-a7672951f50f")
    );
    // The same text line without a time, on the sidecar of a Fluent Bit envelope.
    let line = parse(
        r#"{"time":"2026-03-14T10:00:02.411Z","log":"\"GET /v1/status HTTP/1.1\" 503 UC upstream_reset_before_response_started{connection_termination} - \"-\" 0 95 0 - \"10.90.16.220\" \"Apache-HttpClient/4.5.1\" \"3a7cbcc1-af72-47fb-bbac-a7672951f50f\" \"health.abc.com\" \"10.80.47.192:8181\" outbound|80||health-api.production.svc.cluster.local 10.80.45.233:37132 10.80.45.233:80 10.80.46.220:59375 - -","kubernetes":{"container_name":"istio-proxy","labels":{"app":"health"}}}"#,
    );
    assert_eq!(line.service.as_deref(), Some("health"));
    assert_eq!(line.status, Some(503));
    assert_eq!(
        line.request_id.as_deref(),
        Some("3a7cbcc1-af72-47fb-bbac-a7672951f50f")
    );
}

#[test]
fn nginx_and_ingress_nginx_lines() {
    let e = parse(
        r#"10.1.2.3 - - [14/Mar/2026:10:00:02 +0000] "GET /hello HTTP/1.1" 503 190 "-" "curl/8.5.0" 347 0.002 [shop-payment-8080] [] - - - - 5f540d869efb6a517e34363aba9e783b"#,
    );
    assert_eq!(e.status, Some(503));
    assert_eq!(time(&e), "2026-03-14T10:00:02.000Z");
    assert_eq!(
        e.request_id.as_deref(),
        Some("5f540d869efb6a517e34363aba9e783b")
    );
    let combined = parse(
        r#"192.168.1.7 - frank [10/Oct/2025:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://example.com/" "Mozilla/5.0""#,
    );
    assert_eq!(combined.status, Some(200));
    assert_eq!(time(&combined), "2025-10-10T20:55:36.000Z");
}

#[test]
fn trace_ids_are_comparable() {
    let id = |line: &str| parse(line).trace_id.map(|t| t.to_string());
    let p = |v: &str| format!(r#"{{"ts":1,"traceparent":"{v}"}}"#);
    assert_eq!(
        id(&p(&format!("00-{TRACE}-00f067aa0ba902b7-01"))).as_deref(),
        Some(TRACE)
    );
    assert_eq!(
        id(r#"{"ts":1,"trace_id":"0000000000000000ec70652d4865fdee"}"#).as_deref(),
        Some("ec70652d4865fdee"),
        "a 64-bit id zero-padded to 128 bits matches its short form"
    );
    // Datadog logs a trace's lower 64 bits in decimal, as a string or a number.
    assert_eq!(
        id(r#"{"ts":1,"dd.trace_id":"1244139290787421183"}"#).as_deref(),
        Some("11441217de7d9bff")
    );
    assert_eq!(
        id(r#"{"ts":1,"dd":{"trace_id":18446744073709551615}}"#).as_deref(),
        Some("ffffffffffffffff")
    );
    // A short run of digits is an id of its own (hex as likely as decimal), and more
    // than 64 bits of decimal is no Datadog id: both are kept as written.
    assert_eq!(
        id(r#"{"ts":1,"trace_id":"1234567890123456"}"#).as_deref(),
        Some("1234567890123456")
    );
    assert_eq!(
        id(r#"{"ts":1,"trace_id":"18446744073709551616"}"#).as_deref(),
        Some("18446744073709551616")
    );
    assert_eq!(id(r#"{"ts":1,"trace_id":""}"#), None);
    assert_eq!(id(r#"{"ts":1,"trace_id":"0"}"#), None);
    assert_eq!(
        id(r#"{"ts":1,"trace_id":"00000000000000000000000000000000"}"#),
        None
    );
    assert_eq!(
        id(r#"{"ts":1,"b3":"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}"#).as_deref(),
        Some("80f198ee56343ba864fe8b2a57d3eff7")
    );
    assert_eq!(
        id(r#"{"ts":1,"dd":{"trace_id":"1234567890123456789"}}"#).as_deref(),
        Some("112210f47de98115")
    );
    assert_eq!(
        id(&format!(
            "2026-03-14T10:00:00Z INFO forwarded traceparent=00-{TRACE}-00f067aa0ba902b7-01"
        ))
        .as_deref(),
        Some(TRACE)
    );
}

#[test]
fn grpc_unavailable_is_a_503() {
    let e = parse(
        r#"{"level":"error","ts":"2026-03-14T10:00:02Z","msg":"finished unary call with code Unavailable","grpc.service":"pay.API","grpc.code":"Unavailable"}"#,
    );
    assert_eq!(e.status, Some(503));
    let e = parse(r#"{"ts":"2026-03-14T10:00:02Z","attributes":{"rpc.grpc.status_code":14}}"#);
    assert_eq!(e.status, Some(503));
    let ok = parse(r#"{"ts":"2026-03-14T10:00:02Z","grpc.code":"OK"}"#);
    assert_eq!(ok.status, None);
}

#[test]
fn numeric_levels_on_their_scales() {
    assert_eq!(
        parse(r#"{"time":1531171074631,"level":50,"msg":"x"}"#).level,
        Level::Error
    );
    assert_eq!(
        parse(r#"{"time":1531171074631,"level":30,"msg":"x"}"#).level,
        Level::Info
    );
    assert_eq!(parse(r#"{"ts":1,"severityNumber":17}"#).level, Level::Error);
    assert_eq!(
        parse(r#"{"ts":1,"severity_text":"ERROR2"}"#).level,
        Level::Error
    );
    assert_eq!(parse(r#"{"ts":1,"level":"dpanic"}"#).level, Level::Error);
}

#[test]
fn a_flat_record_keeps_its_own_fields_over_its_message_text() {
    let e = parse(
        r#"{"ts":"2026-03-14T10:00:00Z","service":"a","status":503,"trace_id":"t1","msg":"status=200 trace_id=t2 service=b"}"#,
    );
    assert_eq!(
        (e.service.as_deref(), e.status, e.trace_id.as_deref()),
        (Some("a"), Some(503), Some("t1"))
    );
    assert_eq!(e.message, "status=200 trace_id=t2 service=b");
}

#[test]
fn configured_patterns_come_before_the_built_in_shapes() {
    let mut p = parser()
        .with_patterns(&["<Date> <Time> <Service> <Level> <Content>".to_string()])
        .unwrap();
    let e = p
        .parse("2026-03-14 10:00:02 payment ERROR upstream failed status=503")
        .unwrap();
    assert_eq!(e.service.as_deref(), Some("payment"));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.message, "upstream failed status=503");
    assert_eq!(p.recognised().record, "pattern");
    // The same line as an envelope's payload.
    let e = p
        .parse(
            r#"{"time":"2026-03-14T10:00:02.5Z","log":"2026-03-14 10:00:02 checkout WARN slow"}"#,
        )
        .unwrap();
    assert_eq!(e.service.as_deref(), Some("checkout"));
    assert_eq!(e.level, Level::Warn);
    assert_eq!(p.recognised().payload, "pattern");
    // A line the pattern does not fit falls back to the built-in shapes.
    let e = p
        .parse("2026-03-14T10:00:02Z ERROR [x] c.e.A : boom")
        .unwrap();
    assert_eq!(e.level, Level::Error);
    let bad = parser().with_patterns(&["<Date".to_string()]);
    assert!(bad.is_err());
}

#[test]
fn an_empty_message_pair_inside_the_line_keeps_the_text() {
    // A `msg=`/`@m=` pair with nothing after it says nothing: the record's message stays
    // the line it carried (found by `properties::json_fields_round_trip`).
    for text in ["@m=", "msg=", "level=error msg= took 3 s", "@m=  "] {
        let line = serde_json::json!({"ts": 1_773_482_402_017i64, "service": "s", "msg": text})
            .to_string();
        assert_eq!(parse(&line).message, text, "{line}");
    }
    // A non-empty pair still becomes the message.
    let e = parse(r#"{"ts":1773482402017,"service":"s","log":"level=error msg=boom"}"#);
    assert_eq!(e.message, "boom");
}

#[test]
fn a_message_pair_counts_only_where_the_message_is_pairs_up_to_it() {
    // Inside a sentence (TrainTicket's services log `Response(status=0, msg=Seat is
    // Null., …)` dumps), `msg=` is part of the message; the message stays whole.
    let spring = r#"{"@timestamp":1674981729.57,"log":"16:42:09.569 INFO  s.s.SeatServiceImpl#166 TraceID: 6f3cbf058c2765548a39ad724905d6a1 SpanID: 1e0df701e9b758e4 [getLeftTicketOfInterval][result is <200,Response(status=0, msg=Seat is Null., data=null)>]","kubernetes":{"labels":{"app":"ts-seat-service"}}}"#;
    let e = parse(spring);
    assert_eq!(
        e.message,
        "[getLeftTicketOfInterval][result is <200,Response(status=0, msg=Seat is Null., data=null)>]"
    );
    assert_eq!(
        e.trace_id.as_deref(),
        Some("6f3cbf058c2765548a39ad724905d6a1")
    );
    let text = |t: &str| {
        let line = serde_json::json!({"ts": 1_773_482_402_017i64, "service": "s", "log": t});
        parse(&line.to_string())
    };
    assert_eq!(
        text("connect failed: msg=timeout after 3s").message,
        "connect failed: msg=timeout after 3s"
    );
    // A logfmt line, with keys logheal does not know before the message: its `msg`.
    let e = text(r#"level=error user=bob attempt=3 msg="boom now" trace_id=abc"#);
    assert_eq!(
        (e.message.as_ref(), e.trace_id.as_deref()),
        ("boom now", Some("abc"))
    );
    // After a header, the message part is pairs from its start.
    let e = text("2026-03-14T10:00:02Z ERROR [main] msg=boom trace_id=abc");
    assert_eq!((e.message.as_ref(), e.level), ("boom", Level::Error));
    // Other fields are still read anywhere in the text.
    assert_eq!(
        text("payment failed trace_id=abc").trace_id.as_deref(),
        Some("abc")
    );
}
