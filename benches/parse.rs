//! Parsing throughput per record shape, one core: `LineParser::parse` over 20,000
//! generated lines of each shape (ids and times vary per line). The baseline measured in
//! the same run is `serde_json::from_str::<Value>` over the flat JSON lines (what a naive
//! reader does before any logic).
//!
//! `cargo bench --bench parse` prints criterion medians; lines/s per shape are criterion's
//! throughput figures.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logheal_parsers::{FieldNames, LineParser};
use std::hint::black_box;
use std::time::Duration;

const N: usize = 20_000;

fn ts(i: usize) -> String {
    format!(
        "2026-03-14T10:{:02}:{:02}.{:03}Z",
        (i / 60_000) % 60,
        (i / 1000) % 60,
        i % 1000
    )
}

fn trace(i: usize) -> String {
    format!("{:016x}{:016x}", i * 7919 + 1, i * 104_729 + 3)
}

fn shapes() -> Vec<(&'static str, Vec<String>)> {
    let svc = |i: usize| ["payment", "checkout", "gateway", "inventory"][i % 4];
    let gen = |f: &dyn Fn(usize) -> String| (0..N).map(f).collect::<Vec<_>>();
    vec![
        (
            "flat-json",
            gen(&|i| {
                format!(
                    r#"{{"ts":"{}","level":"error","service":"{}","trace_id":"{}","status":503,"msg":"POST /api/checkout 503: upstream connect error"}}"#,
                    ts(i),
                    svc(i),
                    trace(i)
                )
            }),
        ),
        (
            "logfmt",
            gen(&|i| {
                format!(
                    r#"ts={} level=error service={} trace_id={} status=503 msg="upstream connect error""#,
                    ts(i),
                    svc(i),
                    trace(i)
                )
            }),
        ),
        (
            "spring-boot-3",
            gen(&|i| {
                format!("{} ERROR 1 --- [{}] [nio-8080-exec-{}] [{}-00f067aa0ba902b7] c.e.shop.Handler : payment call failed after {} ms", ts(i), svc(i), i % 9, trace(i), i % 500)
            }),
        ),
        (
            "sleuth",
            gen(&|i| {
                format!("2026-03-14 10:00:02.561  WARN [{},{},{},true] 68058 --- [nio-8081-exec-1] c.e.s.Application   : retrying call {}", svc(i), &trace(i)[..16], &trace(i)[16..], i)
            }),
        ),
        (
            "logback-mdc",
            gen(&|i| {
                format!("2026-03-14 10:00:02,125 ERROR [main] c.e.Pay - trace_id={} span_id=00f067aa0ba902b7 charge {} failed", trace(i), i)
            }),
        ),
        (
            "trainticket",
            gen(&|i| {
                format!("10:00:02.{:03} ERROR c.e.VerifyController#54 TraceID: {} SpanID: f6de2c1b4a397289 [verifyCode][verify result: {}]", i % 1000, trace(i), i % 2 == 0)
            }),
        ),
        (
            "python-otel",
            gen(&|i| {
                format!("2026-03-14 10:00:02,250 ERROR [app.pay] [pay.py:42] [trace_id={} span_id=00f067aa0ba902b7 resource.service.name={} trace_sampled=True] - card processor unavailable {}", trace(i), svc(i), i)
            }),
        ),
        (
            "klog",
            gen(&|i| {
                format!(
                    "E0314 10:00:02.{:06}       1 main.go:39] error getting server version {}",
                    i % 1_000_000,
                    i
                )
            }),
        ),
        (
            "envoy-istio",
            gen(&|i| {
                format!(
                    r#"[{}] "GET /api/items/{} HTTP/1.1" 503 UF upstream_reset_before_response_started - "-" 0 95 3 - "-" "okhttp/4.9" "{}-6d84-929d-98bd-c5aee93b5c88" "{}:8080" "10.0.0.7:8080" outbound|8080||{}.shop.svc.cluster.local 10.0.0.9:37652 10.0.0.7:8080 10.0.0.9:46520 - default"#,
                    ts(i),
                    i,
                    &trace(i)[..8],
                    svc(i),
                    svc(i)
                )
            }),
        ),
        (
            "nginx-ingress",
            gen(&|i| {
                format!(
                    r#"10.1.2.{} - - [14/Mar/2026:10:00:02 +0000] "GET /api/items/{} HTTP/1.1" 503 190 "-" "curl/8.5.0" 347 0.002 [shop-{}-8080] [] - - - - {}"#,
                    i % 250,
                    i,
                    svc(i),
                    trace(i)
                )
            }),
        ),
        (
            "fluent-bit+spring",
            gen(&|i| {
                format!(
                    r#"{{"@timestamp":1773482402.017,"time":"{}","stream":"stdout","_p":"F","log":"{} ERROR 1 --- [{}] [exec-1] [{}-00f067aa0ba902b7] c.e.Handler : call failed {}","kubernetes":{{"pod_name":"{}-6d8f9c7b5d-qx2lp","namespace_name":"shop","labels":{{"app":"{}","pod-template-hash":"6d8f9c7b5d"}},"container_name":"app","host":"node-1"}}}}"#,
                    ts(i),
                    ts(i),
                    svc(i),
                    trace(i),
                    i,
                    svc(i),
                    svc(i)
                )
            }),
        ),
        (
            "vector+json",
            gen(&|i| {
                format!(
                    r#"{{"file":"/var/log/pods/x/app/0.log","kubernetes":{{"container_name":"app","pod_labels":{{"app":"{}"}},"pod_name":"{}-5c7d8f9b6-z8k2m"}},"message":"{{\"time\":\"{}\",\"level\":\"error\",\"msg\":\"payment returned 503\",\"status\":503,\"trace_id\":\"{}\"}}","source_type":"kubernetes_logs","stream":"stdout","timestamp":"{}"}}"#,
                    svc(i),
                    svc(i),
                    ts(i),
                    trace(i),
                    ts(i)
                )
            }),
        ),
    ]
}

fn parse(c: &mut Criterion) {
    let shapes = shapes();
    let mut group = c.benchmark_group("parse");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(N as u64));
    let flat = &shapes[0].1;
    group.bench_function("baseline/serde_json-Value/flat-json", |b| {
        b.iter(|| {
            for l in flat {
                black_box(serde_json::from_str::<serde_json::Value>(l).unwrap());
            }
        })
    });
    for (name, lines) in &shapes {
        let mut parser = LineParser::new(&FieldNames::default(), None, 2026).unwrap();
        for l in lines {
            let e = parser
                .parse(l)
                .unwrap_or_else(|e| panic!("{name}: {e}: {l}"));
            assert!(
                e.ts.is_some() || *name == "trainticket",
                "{name}: no time: {l}"
            );
        }
        group.bench_function(*name, |b| {
            b.iter(|| {
                for l in lines {
                    black_box(parser.parse(l).ok());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
