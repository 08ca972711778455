//! logheal-kafka: everything logheal does with Kafka (`rdkafka`). The consumer-group
//! source (`source`, reading each partition's queue in batches through `batch`) with its
//! partition merge (`merge`) and commit positions (`offsets`), the action ledger that
//! makes hand-offs durable and keeps a restarted consumer from calling twice (`ledger`,
//! which also keeps the silences), the re-keying stage that routes every event of a
//! trace to one partition (`rekey`), and the signals topic between the engine's two
//! stages (`signals`).
//!
//! Invariant: no offset is committed past the engine's rewind point (`source::Source::commit`
//! takes it), and a correlator commits only behind signals the brokers confirmed.

// Only `batch` may use `unsafe` (librdkafka's batch consume, see there).
#![deny(unsafe_code)]

/// What can go wrong with Kafka, for the callers of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client call failed: what was being done, and the client's error. (Every
    /// message here says it all, with no `source`, so that `{:#}` does not repeat it.)
    #[error("{doing}: {error}")]
    Client { doing: String, error: KafkaError },
    /// A topic logheal needs does not exist (the message says how to create it).
    #[error("{0}")]
    MissingTopic(String),
    /// Records the brokers did not confirm: nothing past them may be committed (a
    /// restart sends them again).
    #[error("{0}")]
    Lost(String),
    /// Settings logheal cannot work with, or a stage that could not start.
    #[error("{0}")]
    Config(String),
}

/// Maps a client error to `Error::Client`, saying what was being done.
pub fn doing(what: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let doing = what.into();
    move |error| Error::Client { doing, error }
}

pub mod batch;
pub mod ledger;
pub mod merge;
pub mod offsets;
pub mod rekey;
pub mod signals;
pub mod source;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Queues one record, waiting for room while the producer's queue is full; any other
/// error is returned.
pub fn send_waiting<'a, K, P, C>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ProducerContext,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(Duration::from_millis(10));
                record = r;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits until the brokers have answered for every record sent, up to `timeout`.
/// rust-rdkafka's own `flush` waits in 100 ms slices that run to their end even when the
/// last answer came at once, so it took at least 100 ms whenever a record was in flight;
/// a correlator confirms its signals every second, and every decision waiting behind it
/// waited too (the Kafka latency's P99 was 93–130 ms).
pub fn flush<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    // One `rd_kafka_flush` without waiting: it sends what lingers at once.
    let _ = producer.flush(Duration::ZERO);
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        producer.poll(FLUSH_STEP);
    }
    Ok(())
}

/// How long `flush` waits between looks at what is in flight.
const FLUSH_STEP: Duration = Duration::from_millis(1);

/// A producer context that counts the records the brokers did not take (each one is
/// logged as `what`), and those they took; whoever commits behind them checks first.
#[derive(Clone)]
pub(crate) struct Failures {
    pub count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub taken: std::sync::Arc<std::sync::atomic::AtomicU64>,
    what: &'static str,
}

impl Failures {
    pub fn new(what: &'static str) -> Self {
        Failures {
            count: std::sync::Arc::default(),
            taken: std::sync::Arc::default(),
            what,
        }
    }

    pub fn any(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Relaxed) > 0
    }
}

impl rdkafka::ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.taken
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err((e, _)) => {
                tracing::error!(error = %e, "{} not delivered", self.what);
                self.count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// How a job talks to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// librdkafka properties passed through as given (SASL, TLS, tuning).
    pub properties: Vec<(String, String)>,
    /// The compacted topic of action hand-offs and outcomes.
    pub ledger_topic: String,
    /// The longest a restart re-reads for a long-lived incident.
    pub max_rewind: Duration,
    /// Bytes buffered for the partition merge before records are released regardless.
    pub merge_buffer_bytes: usize,
    /// How long an empty partition that has not reported its end is waited for before
    /// the others go on without it. A caught-up partition reports its end at once
    /// (`enable.partition.eof`) and is not waited for, so this bounds only a fetch that
    /// is slow to come: a loaded broker, or one partition of a backlog fetched behind
    /// the others. Going on sooner would move time past that partition's records (in a
    /// backlog, a second of waiting is minutes of event time).
    pub merge_idle: Duration,
    /// The topic between the stages (see `signal.rs`); none: one engine per consumer.
    pub signals_topic: Option<String>,
    /// Which stages this process runs (with a signals topic).
    pub stage: logheal_pipeline::signal::Stage,
    /// Correlators in this process (with a signals topic): each is a consumer of the
    /// group on a thread of its own, with its own share of the input partitions.
    pub correlate_threads: usize,
}

impl KafkaConfig {
    pub fn new(brokers: &str, topics: Vec<String>, group: &str) -> Self {
        KafkaConfig {
            brokers: brokers.to_string(),
            topics,
            group: group.to_string(),
            properties: Vec::new(),
            ledger_topic: "logheal-actions".into(),
            max_rewind: Duration::from_secs(3600),
            merge_buffer_bytes: 64 << 20,
            merge_idle: crate::merge::START_WAIT,
            signals_topic: None,
            stage: logheal_pipeline::signal::Stage::All,
            correlate_threads: 1,
        }
    }

    /// The configuration every client of the job starts from: the brokers, then the
    /// passed-through properties (which may override anything but what correctness
    /// needs, set by each client after this).
    pub fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        client.set("client.id", "logheal");
        for (k, v) in &self.properties {
            client.set(k, v);
        }
        client
    }

    /// Properties logheal cannot work with, as an error message.
    pub fn check(&self) -> Result<(), Error> {
        for (k, v) in &self.properties {
            match k.as_str() {
                "partition.assignment.strategy" if v.contains("cooperative") => {
                    return Err(Error::Config(format!(
                        "{k}={v}: logheal rebuilds its state on every rebalance and needs an eager strategy (range or roundrobin)"
                    )))
                }
                "enable.auto.commit" | "enable.auto.offset.store" | "group.id" => {
                    return Err(Error::Config(format!(
                        "{k} is managed by logheal (offsets are committed only once the state they cover is recoverable)"
                    )))
                }
                _ => {}
            }
        }
        if self.topics.is_empty() {
            return Err(Error::Config("no topic to consume".into()));
        }
        if self.correlate_threads == 0 || self.correlate_threads > 64 {
            return Err(Error::Config(format!(
                "correlate_threads {}: between 1 and 64",
                self.correlate_threads
            )));
        }
        if self.correlate_threads > 1 && self.signals_topic.is_none() {
            return Err(Error::Config(
                "more than one correlate thread needs the signals topic".into(),
            ));
        }
        if self.stage != logheal_pipeline::signal::Stage::All && self.signals_topic.is_none() {
            return Err(Error::Config(
                "a stage of its own needs the signals topic (kafka.signals_topic)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_would_break_at_least_once_or_the_rebuild() {
        let mut config = KafkaConfig::new("k:9092", vec!["logs".into()], "g");
        assert!(config.check().is_ok());
        for (k, v) in [
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("enable.auto.commit", "true"),
            ("group.id", "other"),
        ] {
            config.properties = vec![(k.into(), v.into())];
            let err = config.check().unwrap_err();
            assert!(matches!(err, Error::Config(_)));
            assert!(err.to_string().starts_with(k), "{err}");
        }
        config.properties = vec![("sasl.username".into(), "me".into())];
        assert!(config.check().is_ok());
        config.topics.clear();
        assert_eq!(
            config.check().unwrap_err().to_string(),
            "no topic to consume"
        );
    }
}
