//! Re-keying: correlation needs every event of a trace in one consumer, so a topic that
//! is not keyed by trace id is copied into one that is. Records are read in a consumer
//! group of their own through the same time-ordered partition merge as the job, so each
//! output partition stays in time order; they are written keyed by trace id (by service
//! when a record has none; unkeyed when it cannot be parsed) with their timestamps, and
//! the input offsets are committed only after the brokers confirmed every record
//! written before them: at-least-once.

use crate::source::Source;
use crate::{doing, Error, Failures, KafkaConfig};
use logheal_parsers::{EventTime, FieldNames, LineParser};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RekeyStats {
    pub records: u64,
    pub by_trace: u64,
    pub by_service: u64,
    /// Unparseable, or without trace and service: written without a key.
    pub unkeyed: u64,
}

/// Copies the configured topics into `to` until `stop` is set; `until_end` stops once
/// the assigned partitions are drained.
pub fn run(
    config: &KafkaConfig,
    to: &str,
    stop: &AtomicBool,
    until_end: bool,
) -> Result<RekeyStats, Error> {
    let mut source = Source::subscribe(config).map_err(doing("cannot create the consumer"))?;
    let failures = Failures::new("re-keyed record");
    let producer: BaseProducer<Failures> = config
        .client()
        .set("acks", "all")
        .set("linger.ms", "5")
        .create_with_context(failures.clone())
        .map_err(doing("cannot create the producer"))?;
    let mut parser = LineParser::new(
        &FieldNames::default(),
        None,
        logheal_parsers::time::current_year(),
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let mut stats = RekeyStats::default();
    let mut error = None;
    while !stop.load(Ordering::Relaxed) {
        let polled = source.poll(Duration::from_millis(100));
        let copied = source
            .merge
            .release(Instant::now(), false, |payload, time, _| {
                if error.is_none() {
                    let key = trace_key(&mut parser, payload, &mut stats);
                    if let Err(e) = send(&producer, to, key.as_deref(), payload, time) {
                        error = Some(e);
                    }
                }
                (None, error.is_some())
            });
        if let Some(e) = error.take() {
            return Err(doing(format!("cannot write to {to}"))(e));
        }
        if copied > 0 {
            crate::flush(&producer, FLUSH_TIMEOUT)
                .map_err(doing("re-keyed records not confirmed"))?;
            if failures.any() {
                return Err(Error::Lost("re-keyed records were lost in delivery; the input offsets were not committed, so a restart copies them again".into()));
            }
            source
                .commit(EventTime::MAX, CommitMode::Sync)
                .map_err(doing("cannot commit"))?;
        }
        if until_end && source.quiet(&polled) && source.drained(FLUSH_TIMEOUT).unwrap_or(false) {
            break;
        }
    }
    source.close();
    Ok(stats)
}

/// The key a record is written under: its trace id (the part traces are matched by, so
/// that a trace's 64-bit and 128-bit forms land in one partition), else its service.
fn trace_key(parser: &mut LineParser, payload: &[u8], stats: &mut RekeyStats) -> Option<String> {
    stats.records += 1;
    let event = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| parser.parse(text).ok());
    match event.as_ref().map(|e| (&e.trace_id, &e.service)) {
        Some((Some(trace), _)) => {
            stats.by_trace += 1;
            Some(logheal_parsers::trace_match_part(trace).to_string())
        }
        Some((None, Some(service))) => {
            stats.by_service += 1;
            Some(service.to_string())
        }
        _ => {
            stats.unkeyed += 1;
            None
        }
    }
}

/// Queues one record under `key` with its timestamp.
fn send(
    producer: &BaseProducer<Failures>,
    to: &str,
    key: Option<&str>,
    payload: &[u8],
    time: Option<i64>,
) -> Result<(), KafkaError> {
    let mut record = BaseRecord::<str, [u8]>::to(to).payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(t) = time {
        record = record.timestamp(t);
    }
    crate::send_waiting(producer, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_is_keyed_by_its_match_part_so_its_forms_share_a_partition() {
        let mut parser = LineParser::new(&FieldNames::default(), None, 2026).unwrap();
        let mut stats = RekeyStats::default();
        let mut key = |line: &str| trace_key(&mut parser, line.as_bytes(), &mut stats);
        let whole = key(r#"{"service":"a","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#);
        // The same trace as Datadog logs it: its lower 64 bits, in decimal.
        let datadog = key(&format!(
            r#"{{"service":"b","dd.trace_id":"{}"}}"#,
            u64::from_str_radix("a3ce929d0e0e4736", 16).unwrap()
        ));
        assert_eq!(whole.as_deref(), Some("a3ce929d0e0e4736"));
        assert_eq!(datadog, whole);
        assert_eq!(key(r#"{"service":"c"}"#).as_deref(), Some("c"));
        assert_eq!(key("not a record"), None);
        assert_eq!(
            (
                stats.records,
                stats.by_trace,
                stats.by_service,
                stats.unkeyed
            ),
            (4, 2, 1, 1)
        );
    }
}
