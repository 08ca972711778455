//! The signals topic between the two stages (see `signal.rs`): correlators publish
//! signals keyed by incident key, so that one decider owns each key, and watermarks to
//! every partition. A correlator commits its input only after the brokers confirmed
//! every signal raised before (`Publisher::confirm`): at-least-once, the decider drops
//! the repeats.
//!
//! A record carries one or more wires, one JSON object per line, in the order they were
//! raised: a correlator gathers what it raises for a partition and sends it as one
//! record (`Publisher::send`), so a broker round trip carries many signals, while a
//! record stays one produce batch of one record (tansu 0.6 loses all but the first
//! record of a batch, see the ledger) and one request is in flight per connection.

use crate::{doing, Error, Failures, KafkaConfig};
use logheal_pipeline::signal::{Wire, WireSignal};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Publisher {
    producer: BaseProducer<Failures>,
    failures: Failures,
    topic: String,
    partitions: i32,
    /// Per partition, the wires gathered for its next record (JSON lines) and the
    /// newest stamp among them.
    pending: Vec<(Vec<u8>, i64)>,
    /// Signals published (not counting watermarks).
    pub published: u64,
    /// Records handed to the producer.
    sent: u64,
}

/// A record is sent once its wires reach this size, whatever else is gathered.
const RECORD_BYTES: usize = 256 << 10;

/// The wires of one record, in order; `Err` for a line that is not one.
pub fn wires(payload: &[u8]) -> impl Iterator<Item = Result<Wire, serde_json::Error>> + '_ {
    payload
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(Wire::from_json)
}

/// The partitions of `topic`, from the brokers' metadata (none if it does not exist).
fn partitions_of(config: &KafkaConfig, topic: &str) -> Result<Vec<i32>, Error> {
    let probe: BaseConsumer = config
        .client()
        .create()
        .map_err(doing("cannot create a client"))?;
    let metadata = probe
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(doing(format!("no metadata for {topic}")))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Every partition of the input topics: a decider's time waits for each one's
/// watermark.
pub fn input_partitions(config: &KafkaConfig) -> Result<Vec<(Arc<str>, i32)>, Error> {
    let mut all = Vec::new();
    for topic in &config.topics {
        let name: Arc<str> = topic.as_str().into();
        let partitions = partitions_of(config, topic)?;
        if partitions.is_empty() {
            return Err(Error::MissingTopic(format!(
                "input topic {topic} does not exist"
            )));
        }
        all.extend(partitions.into_iter().map(|p| (name.clone(), p)));
    }
    all.sort();
    Ok(all)
}

/// Makes sure the signals topic exists: when it does not, creates it with as many
/// partitions as the largest input topic has (deciders scale up to that), with the
/// brokers' default replication. Consumers starting together may race to create it;
/// the one that loses finds it there. An error when it is missing and cannot be created
/// (e.g. no permission): create it by hand then.
pub fn ensure_topic(config: &KafkaConfig, topic: &str) -> Result<(), Error> {
    if !partitions_of(config, topic)?.is_empty() {
        return Ok(());
    }
    let partitions = input_partitions(config)?
        .iter()
        .fold(
            std::collections::BTreeMap::<&str, i32>::new(),
            |mut m, (t, _)| {
                *m.entry(t).or_default() += 1;
                m
            },
        )
        .into_values()
        .max()
        .unwrap_or(1);
    let admin: AdminClient<DefaultClientContext> = config
        .client()
        .create()
        .map_err(doing("cannot create an admin client"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("no runtime: {e}")))?;
    // -1: the brokers' default replication factor (KIP-464).
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let created = runtime
        .block_on(admin.create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        ))
        .map_err(doing(format!("cannot create the signals topic {topic}")))?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Error::MissingTopic(format!(
                    "signals topic {topic} does not exist and cannot be created ({code}): create it (as many partitions as deciders may run), e.g. `kafka-topics.sh --create --topic {topic} --partitions {partitions}`"
                )))
            }
        }
    }
    // The new topic shows in the metadata shortly after.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while partitions_of(config, topic)?.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(Error::MissingTopic(format!(
                "signals topic {topic} was created but does not show"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!(topic, partitions, "signals topic created");
    Ok(())
}

impl Publisher {
    /// A producer for `topic`, which must exist.
    pub fn open(config: &KafkaConfig, topic: &str) -> Result<Publisher, Error> {
        let partitions = partitions_of(config, topic)?.len() as i32;
        if partitions == 0 {
            return Err(Error::MissingTopic(format!(
                "signals topic {topic} does not exist: create it (as many partitions as deciders may run), e.g. `kafka-topics.sh --create --topic {topic} --partitions 6`"
            )));
        }
        let failures = Failures::new("signal");
        let producer: BaseProducer<Failures> = config
            .client()
            .set("acks", "all")
            .set("linger.ms", "5")
            // One record per batch: tansu 0.6 loses all but the first record of a
            // batch (see the ledger).
            .set("batch.num.messages", "1")
            // One request in flight: a watermark must never overtake a signal sent
            // before it to the same partition (a broker may append concurrent requests
            // in any order).
            .set("max.in.flight.requests.per.connection", "1")
            .create_with_context(failures.clone())
            .map_err(doing("cannot create the signals producer"))?;
        Ok(Publisher {
            producer,
            failures,
            topic: topic.to_string(),
            partitions,
            pending: vec![(Vec::new(), i64::MIN); partitions as usize],
            published: 0,
            sent: 0,
        })
    }

    /// Gathers a signal for the partition of its incident key.
    pub fn signal(&mut self, key: &str, signal: WireSignal) -> Result<(), Error> {
        let at = signal.at;
        self.gather(
            partition_of(key, self.partitions),
            &Wire::Signal(signal),
            at,
        )?;
        self.published += 1;
        Ok(())
    }

    /// Gathers a watermark for every partition (every decider needs it), stamped with
    /// the correlator's event time `stamp` (deciders merge partitions by stamp: the end
    /// of input must not be stamped in the future of the other correlators' signals),
    /// and sends everything gathered.
    pub fn watermark(&mut self, mark: &Wire, stamp: i64) -> Result<(), Error> {
        for partition in 0..self.partitions {
            self.gather(partition, mark, stamp)?;
        }
        self.send()
    }

    fn gather(&mut self, partition: i32, wire: &Wire, stamp: i64) -> Result<(), Error> {
        let (buf, newest) = &mut self.pending[partition as usize];
        serde_json::to_writer(&mut *buf, wire).expect("signals serialise");
        buf.push(b'\n');
        *newest = (*newest).max(stamp);
        if buf.len() >= RECORD_BYTES {
            self.send_partition(partition)?;
        }
        Ok(())
    }

    /// Sends what was gathered: one record per partition.
    pub fn send(&mut self) -> Result<(), Error> {
        for partition in 0..self.partitions {
            self.send_partition(partition)?;
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn send_partition(&mut self, partition: i32) -> Result<(), Error> {
        let (buf, newest) = &mut self.pending[partition as usize];
        if buf.is_empty() {
            return Ok(());
        }
        let record = BaseRecord::<str, [u8]>::to(&self.topic)
            .partition(partition)
            .payload(buf.as_slice())
            .timestamp(millis(*newest));
        crate::send_waiting(&self.producer, record).map_err(doing("cannot send a signal"))?;
        self.sent += 1;
        buf.clear();
        *newest = i64::MIN;
        Ok(())
    }

    /// Records handed to the producer so far (see `taken`).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Whether the brokers have taken the first `sent` records, without waiting; an
    /// error if any record was lost (then nothing may be committed).
    pub fn taken(&self, sent: u64) -> Result<bool, Error> {
        self.producer.poll(Duration::ZERO);
        if self.failures.any() {
            return Err(Error::Lost("signals were lost in delivery".into()));
        }
        Ok(self
            .failures
            .taken
            .load(std::sync::atomic::Ordering::Relaxed)
            >= sent)
    }

    /// Sends what was gathered and waits until the brokers have everything; an error if
    /// anything was lost (then nothing may be committed: a restart publishes it again).
    pub fn confirm(&mut self) -> Result<(), Error> {
        self.send()?;
        crate::flush(&self.producer, TIMEOUT).map_err(doing("signals not confirmed"))?;
        if self.failures.any() {
            return Err(Error::Lost("signals were lost in delivery".into()));
        }
        Ok(())
    }
}

/// The partition of an incident key: FNV-1a of the key, so every correlator, whatever
/// its client, sends one key to one partition.
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1) as u32) as i32
}

/// Event time (ns) as a Kafka timestamp (ms). Never 0, which the client would replace
/// by the wall clock (a time far ahead of a backlog's, which would hold the deciders'
/// merge back): no time yet is stamped as the earliest.
fn millis(nanos: i64) -> i64 {
    (nanos / 1_000_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_key_always_lands_in_one_partition() {
        let p = partition_of("cross-service-503/payment", 6);
        assert!((0..6).contains(&p));
        assert_eq!(partition_of("cross-service-503/payment", 6), p);
        // Keys spread over the partitions.
        let used: std::collections::BTreeSet<i32> = (0..100)
            .map(|i| partition_of(&format!("rule/service-{i}"), 6))
            .collect();
        assert_eq!(used.len(), 6);
        assert_eq!(partition_of("anything", 1), 0);
    }
}
