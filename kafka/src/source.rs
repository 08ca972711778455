//! The Kafka source: one consumer in a consumer group, polled on the engine's thread.
//!
//! Records go through the partition merge into the engine. Offsets are committed at the
//! low-water mark of the live state (see `offsets`), so a consumer that dies loses
//! nothing: its successor re-reads from there. A rebalance (eager: every partition is
//! revoked, then the new set assigned) commits synchronously, and the caller rebuilds its
//! state from the committed offsets of the new assignment.

use crate::merge::Merge;
use crate::KafkaConfig;
use logheal_parsers::EventTime;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records taken from the client per poll before the merge runs.
const POLL_BATCH: usize = 4096;

/// What the client's callbacks share with the polling thread.
#[derive(Default)]
pub struct Shared {
    /// The last positions committed, to commit again synchronously on a revoke.
    committed: Mutex<Option<TopicPartitionList>>,
    rebalanced: AtomicBool,
    /// Records behind the brokers' high watermarks, summed over the assignment (from
    /// the client's statistics; -1 until the first report).
    pub lag: AtomicI64,
    /// Rebalances seen.
    pub rebalances: AtomicI64,
}

pub struct Context(pub Arc<Shared>);

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let lag = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|(id, _)| **id >= 0)
            .map(|(_, p)| p.consumer_lag.max(0))
            .sum();
        self.0.lag.store(lag, Ordering::Relaxed);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let positions = self.0.committed.lock().expect("not poisoned").take();
            if let Some(tpl) = positions {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    tracing::warn!(error = %e, "commit on revoke failed; the next owner re-reads a little more");
                }
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
        self.0.rebalances.fetch_add(1, Ordering::Relaxed);
        self.0.rebalanced.store(true, Ordering::Release);
    }
}

/// What one poll brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// Records (or end-of-partition marks) arrived.
    Data,
    /// Nothing arrived within the timeout.
    Idle,
    /// The assignment changed: state must be rebuilt from the committed offsets.
    Rebalanced,
}

pub struct Source {
    consumer: BaseConsumer<Context>,
    /// For `drained`: a client of its own, made at the first check. The brokers answer
    /// a connection's requests in order, so a watermark query on the consumer's own
    /// connection waits behind its long-polling fetch (up to `fetch.wait.max.ms`, 500 ms
    /// by default, per partition) exactly when the input is quiet.
    probe: std::cell::OnceCell<BaseConsumer>,
    client: ClientConfig,
    pub shared: Arc<Shared>,
    pub merge: Merge,
    /// Records the client delivered with an error (counted, never stopping the partition).
    pub errors: u64,
}

impl Source {
    /// Joins the group and subscribes to the configured topics.
    pub fn subscribe(config: &KafkaConfig) -> KafkaResult<Source> {
        let shared = Arc::new(Shared {
            lag: AtomicI64::new(-1),
            ..Shared::default()
        });
        let mut client = config.client();
        client
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true");
        for (key, value) in [
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "5000"),
        ] {
            if client.get(key).is_none() {
                client.set(key, value);
            }
        }
        let consumer: BaseConsumer<Context> =
            client.create_with_context(Context(shared.clone()))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Source {
            consumer,
            probe: std::cell::OnceCell::new(),
            client: config.client(),
            shared,
            merge: Merge::new(config.merge_buffer_bytes, config.merge_idle),
            errors: 0,
        })
    }

    /// Waits up to `timeout` for records, buffers what arrived, and reports a rebalance
    /// (after which the merge holds only records of the new assignment, and the caller
    /// must start its state over).
    pub fn poll(&mut self, timeout: Duration) -> Polled {
        let mut got = false;
        let mut rebalanced = false;
        let deadline = Instant::now() + timeout;
        let mut wait = timeout;
        let mut taken = 0;
        while taken < POLL_BATCH {
            let result = self.consumer.poll(wait);
            // Rebalance callbacks run inside `poll`: what it returned belongs to the
            // new assignment, what was buffered before does not.
            if self.shared.rebalanced.swap(false, Ordering::AcqRel) {
                rebalanced = true;
                reset(&mut self.merge, &self.consumer);
            }
            let Some(result) = result else {
                // `poll` also returns nothing after serving an event (a commit result, a
                // rebalance): only a wait that ran out means the stream is quiet.
                let left = deadline.saturating_duration_since(Instant::now());
                if got || rebalanced || left.is_zero() {
                    break;
                }
                wait = left;
                continue;
            };
            taken += 1;
            wait = Duration::ZERO;
            got = true;
            let now = Instant::now();
            match result {
                Ok(m) => self.merge.push(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.timestamp().to_millis(),
                    m.payload().unwrap_or_default(),
                    now,
                ),
                Err(KafkaError::PartitionEOF(p)) => self.merge.reached_end(p),
                Err(e) => {
                    self.errors += 1;
                    tracing::warn!(error = %e, "consumer error");
                }
            }
        }
        if rebalanced {
            Polled::Rebalanced
        } else if got {
            Polled::Data
        } else {
            Polled::Idle
        }
    }

    /// Commits, for every partition, the first offset still needed to rebuild the state
    /// from `point` on (or, with `point` = `EventTime::MAX`, everything processed).
    pub fn commit(&mut self, point: EventTime, mode: CommitMode) -> KafkaResult<()> {
        let mut tpl = TopicPartitionList::new();
        for p in &mut self.merge.partitions {
            if let Some(offset) = p.checkpoints.commit_position(point) {
                tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(offset))?;
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.commit(&tpl, mode)?;
        *self.shared.committed.lock().expect("not poisoned") = Some(tpl);
        Ok(())
    }

    /// Whether every assigned partition has been processed up to its high watermark
    /// (asks the brokers; for `--until-end`).
    pub fn drained(&self, timeout: Duration) -> KafkaResult<bool> {
        let assignment = self.consumer.assignment()?;
        if assignment.count() == 0 {
            return Ok(false);
        }
        // Where reading starts for a partition nothing was read from yet: the group's
        // committed offset (a consumer that takes over a drained partition is drained).
        let committed = self.consumer.committed(timeout)?;
        let probe = match self.probe.get() {
            Some(probe) => probe,
            None => {
                let probe = self.client.create()?;
                self.probe.get_or_init(|| probe)
            }
        };
        for e in assignment.elements() {
            let (low, high) = probe.fetch_watermarks(e.topic(), e.partition(), timeout)?;
            let start = committed
                .find_partition(e.topic(), e.partition())
                .and_then(|c| match c.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(low);
            let next = self
                .merge
                .partitions
                .iter()
                .find(|p| p.partition == e.partition() && &*p.topic == e.topic())
                .and_then(|p| p.checkpoints.next())
                .unwrap_or(start);
            if next < high {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Positions processed so far, per partition: `(topic, partition, next offset)`.
    pub fn positions(&self) -> Vec<(Arc<str>, i32, i64)> {
        self.merge
            .partitions
            .iter()
            .filter_map(|p| Some((p.topic.clone(), p.partition, p.checkpoints.next()?)))
            .collect()
    }

    /// Leaves the group (after a final commit by the caller).
    pub fn close(self) {
        self.consumer.unsubscribe();
    }
}

/// Forgets what was buffered and learns the new assignment.
fn reset(merge: &mut Merge, consumer: &BaseConsumer<Context>) {
    merge.clear();
    if let Ok(assignment) = consumer.assignment() {
        let now = Instant::now();
        for e in assignment.elements() {
            merge.assign(e.topic(), e.partition(), now);
        }
    }
}
