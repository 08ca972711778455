//! Re-keying: correlation needs every event of a trace in one consumer, so a topic that
//! is not keyed by trace id is copied into one that is. Records are read in a consumer
//! group of their own, written keyed by trace id (by service when a record has none;
//! unparseable records keep their key), and the input offsets are committed only after
//! the brokers confirmed every record written before them: at-least-once.

use super::KafkaConfig;
use logheal_parsers::{FieldNames, LineParser};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Records copied between two commits.
const BATCH: usize = 10_000;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RekeyStats {
    pub records: u64,
    pub by_trace: u64,
    pub by_service: u64,
    /// Unparseable or without trace and service: written with their original key.
    pub unkeyed: u64,
}

/// Counts records the brokers did not take.
#[derive(Default, Clone)]
struct Failures(Arc<AtomicU64>);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::error!(error = %e, "re-keyed record not delivered");
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Copies the configured topics into `to` until `stop` is set; `until_end` stops once
/// the assigned partitions are drained.
pub fn run(
    config: &KafkaConfig,
    to: &str,
    stop: &AtomicBool,
    until_end: bool,
) -> Result<RekeyStats, String> {
    let consumer: BaseConsumer = config
        .client()
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| format!("cannot create the consumer: {e}"))?;
    let failures = Failures::default();
    let producer: BaseProducer<Failures> = config
        .client()
        .set("acks", "all")
        .set("linger.ms", "5")
        .create_with_context(failures.clone())
        .map_err(|e| format!("cannot create the producer: {e}"))?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    let mut parser = LineParser::new(
        &FieldNames::default(),
        None,
        logheal_parsers::time::current_year(),
    )?;
    let mut stats = RekeyStats::default();
    let mut positions: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut at_end: BTreeMap<i32, bool> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut copied = 0;
        while copied < BATCH {
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                break;
            };
            let m = match result {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) => {
                    at_end.insert(p, true);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    continue;
                }
            };
            at_end.insert(m.partition(), false);
            let payload = m.payload().unwrap_or_default();
            let event = std::str::from_utf8(payload)
                .ok()
                .and_then(|text| parser.parse(text).ok());
            let key: Option<Vec<u8>> = match event.as_ref().map(|e| (&e.trace_id, &e.service)) {
                Some((Some(trace), _)) => {
                    stats.by_trace += 1;
                    Some(trace.as_bytes().to_vec())
                }
                Some((None, Some(service))) => {
                    stats.by_service += 1;
                    Some(service.as_bytes().to_vec())
                }
                _ => {
                    stats.unkeyed += 1;
                    m.key().map(<[u8]>::to_vec)
                }
            };
            let mut record = BaseRecord::to(to).payload(payload);
            if let Some(key) = &key {
                record = record.key(key.as_slice());
            }
            if let Some(t) = m.timestamp().to_millis() {
                record = record.timestamp(t);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        r,
                    )) => {
                        producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                    Err((e, _)) => return Err(format!("cannot write to {to}: {e}")),
                }
            }
            positions.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
            stats.records += 1;
            copied += 1;
        }
        if !positions.is_empty() {
            producer
                .flush(FLUSH_TIMEOUT)
                .map_err(|e| format!("re-keyed records not confirmed: {e}"))?;
            if failures.0.load(Ordering::Relaxed) > 0 {
                return Err("re-keyed records were lost in delivery; the input offsets were not committed, so a restart copies them again".into());
            }
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in &positions {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(|e| e.to_string())?;
            }
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| format!("cannot commit: {e}"))?;
        }
        if until_end && copied == 0 {
            let assigned = consumer.assignment().map_err(|e| e.to_string())?;
            let drained = assigned.count() > 0
                && assigned
                    .elements()
                    .iter()
                    .all(|e| at_end.get(&e.partition()) == Some(&true));
            if drained {
                break;
            }
        }
    }
    Ok(stats)
}
