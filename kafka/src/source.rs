//! The Kafka source: one consumer in a consumer group, polled on the engine's thread.
//!
//! Records go through the partition merge into the engine. Offsets are committed at the
//! low-water mark of the live state (see `offsets`), so a consumer that dies loses
//! nothing: its successor re-reads from there. A rebalance (eager: every partition is
//! revoked, then the new set assigned) commits synchronously, and the caller rebuilds its
//! state from the committed offsets of the new assignment.
//!
//! Each assigned partition's records come from a queue of their own (split off in the
//! rebalance callback), taken only while the partition holds less than its share of the
//! merge's buffer: the client stops fetching a partition whose queue is full, so one
//! partition's backlog waits in the client instead of crowding the others out of the
//! merge (which would then have to release records out of time order).

use crate::merge::Merge;
use crate::KafkaConfig;
use logheal_parsers::EventTime;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// What the client may fetch ahead, in kilobytes (`queued.max.messages.kbytes`): the
/// client's own default, 64 MB. With 16 MB the pipeline waited for fetches half of its
/// time on the Kafka bench (3 s of 6), and reached 81 % of a bare consumer against 91 %;
/// its peak RSS was 296 MB against 360 MB. Set it lower to trade speed for memory.
const QUEUED_KBYTES: &str = "65536";

/// How long a fetch may wait for records (`fetch.wait.max.ms`; the client's default is
/// 500). A broker that answers a fetch only when its wait runs out (tansu always; Kafka
/// while a partition has fewer than `fetch.min.bytes` new) holds every fetch that long,
/// and the merge, which waits for every partition's first records before it releases
/// any, waited for one fetch after another: on the Kafka bench's topic `logheal run`
/// took 5.5 s with 500 and 2.9 s with 100 (two runs each). Idle, 100 costs ten small
/// fetches a second per broker.
pub const FETCH_WAIT_MS: &str = "100";

/// How long leaving the group may take to serve its revocation (see `Source::close`).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

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
    /// The queues split off for a new assignment, until `Source::poll` takes them.
    split: Mutex<Vec<Queue>>,
    /// Rung by the client when one of the queues gets something.
    bell: Bell,
}

/// Wakes `Source::poll` when the consumer's queue or a partition's queue goes from
/// empty to not empty (the client calls `ring` from its own threads).
#[derive(Default)]
struct Bell {
    rung: Mutex<bool>,
    ringing: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.rung.lock().expect("not poisoned") = true;
        self.ringing.notify_one();
    }

    /// Waits up to `timeout` for a ring since the last wait.
    fn wait(&self, timeout: Duration) {
        let mut rung = self.rung.lock().expect("not poisoned");
        if !*rung {
            rung = self
                .ringing
                .wait_timeout(rung, timeout)
                .expect("not poisoned")
                .0;
        }
        *rung = false;
    }
}

/// The records of one assigned partition, apart from the others' (see `Source::poll`).
struct Queue {
    topic: Arc<str>,
    partition: i32,
    queue: PartitionQueue<Context>,
}

pub struct Context {
    shared: Arc<Shared>,
    /// A client of its own for the brokers' watermarks, made at its first use. The
    /// brokers answer a connection's requests in order, so a watermark query on the
    /// consumer's own connection waits behind its fetch (up to `fetch.wait.max.ms`, 500
    /// ms by default, per partition).
    probe: OnceLock<BaseConsumer>,
    client: ClientConfig,
    /// The consumer itself, to split the queues of the partitions it is assigned.
    consumer: OnceLock<Weak<BaseConsumer<Context>>>,
}

impl Context {
    fn probe(&self) -> KafkaResult<&BaseConsumer> {
        if let Some(probe) = self.probe.get() {
            return Ok(probe);
        }
        let probe = self.client.create()?;
        Ok(self.probe.get_or_init(|| probe))
    }
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let lag = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|(id, _)| **id >= 0)
            .map(|(_, p)| p.consumer_lag.max(0))
            .sum();
        self.shared.lag.store(lag, Ordering::Relaxed);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let positions = self.shared.committed.lock().expect("not poisoned").take();
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
                // Split at once, before the first fetch of the new partitions returns.
                let mut split = self.shared.split.lock().expect("not poisoned");
                split.clear();
                if let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) {
                    for e in tpl.elements() {
                        let Some(mut queue) =
                            consumer.split_partition_queue(e.topic(), e.partition())
                        else {
                            continue;
                        };
                        let shared = self.shared.clone();
                        queue.set_nonempty_callback(move || shared.bell.ring());
                        split.push(Queue {
                            topic: e.topic().into(),
                            partition: e.partition(),
                            queue,
                        });
                    }
                }
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
        self.shared.rebalances.fetch_add(1, Ordering::Relaxed);
        self.shared.rebalanced.store(true, Ordering::Release);
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
    /// One queue per assigned partition: records are taken from a partition only while
    /// it holds less than its share of the merge's buffer, so that a partition whose
    /// records arrive first (a broker may fill a whole fetch with one partition) cannot
    /// crowd out the others and force the merge to release out of time order.
    queues: Vec<Queue>,
    consumer: Arc<BaseConsumer<Context>>,
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
            // Records the client fetches ahead, per partition queue (see QUEUED_KBYTES).
            ("queued.max.messages.kbytes", QUEUED_KBYTES),
            // A member learns of a rebalance at its next heartbeat: at the client's 3 s,
            // a joining consumer (scaling out, a second correlate thread) waits up to
            // that long for the others to give their partitions up.
            ("heartbeat.interval.ms", "1000"),
            ("fetch.wait.max.ms", FETCH_WAIT_MS),
        ] {
            if client.get(key).is_none() {
                client.set(key, value);
            }
        }
        let context = Context {
            shared: shared.clone(),
            probe: OnceLock::new(),
            client: config.client(),
            consumer: OnceLock::new(),
        };
        let mut consumer: BaseConsumer<Context> = client.create_with_context(context)?;
        let bell = shared.clone();
        consumer.set_nonempty_callback(move || bell.bell.ring());
        let consumer = Arc::new(consumer);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Source {
            queues: Vec::new(),
            consumer,
            shared,
            merge: Merge::new(config.merge_buffer_bytes, config.merge_idle),
            errors: 0,
        })
    }

    /// Waits up to `timeout` for records, buffers what arrived, and reports a rebalance
    /// (after which the merge holds only records of the new assignment, and the caller
    /// must start its state over).
    pub fn poll(&mut self, timeout: Duration) -> Polled {
        let (mut got, mut rebalanced) = (false, false);
        let mut now = Instant::now();
        let deadline = now + timeout;
        let mut taken = 0;
        loop {
            // The consumer's own queue: callbacks (a rebalance splits the new
            // partitions' queues), errors, and records of any partition not split.
            loop {
                let result = self.consumer.poll(Duration::ZERO);
                // Rebalance callbacks run inside `poll`: what comes next belongs to
                // the new assignment, what was buffered before does not.
                if self.shared.rebalanced.swap(false, Ordering::AcqRel) {
                    rebalanced = true;
                    reset(&mut self.merge, &self.consumer);
                    self.queues =
                        std::mem::take(&mut *self.shared.split.lock().expect("not poisoned"));
                }
                let Some(result) = result else { break };
                taken += 1;
                got = true;
                take(&mut self.merge, &mut self.errors, None, result, now);
                if taken >= POLL_BATCH {
                    break;
                }
            }
            // Each partition's queue, while the partition holds less than its share.
            let share = self.merge.max_buffered_bytes() / self.queues.len().max(1);
            for q in &self.queues {
                let mut room = share.saturating_sub(self.merge.buffered_of(&q.topic, q.partition));
                while room > 0 && taken < POLL_BATCH {
                    let Some(result) = q.queue.poll(Duration::ZERO) else {
                        break;
                    };
                    taken += 1;
                    got = true;
                    if let Ok(m) = &result {
                        room = room.saturating_sub(m.payload_len().max(1));
                    }
                    take(&mut self.merge, &mut self.errors, Some(q), result, now);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if got || rebalanced || taken >= POLL_BATCH || left.is_zero() {
                break;
            }
            // Nothing yet: wait until a queue gets something (or the time is up), then
            // look at them all again.
            self.shared.bell.wait(left);
            now = Instant::now();
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

    /// Whether an `--until-end` job should ask the brokers if it has drained: the poll
    /// brought nothing and nothing is buffered, or every partition reported its end and
    /// handed on all it had (then at once, not after a poll's timeout with nothing).
    pub fn quiet(&self, polled: &Polled) -> bool {
        (*polled == Polled::Idle && self.merge.buffered_bytes() == 0) || self.merge.caught_up()
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
        // Asked of the probe: on the consumer's own connection the query would wait
        // behind its fetch exactly when the input is quiet.
        let probe = self.consumer.context().probe()?;
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
    ///
    /// The revocation that leaving causes is served here, and the partition queues are
    /// destroyed, before the client closes: a close that finds a rebalance still to
    /// serve asks librdkafka for its rebalance protocol from inside the callback, which
    /// can wait forever (librdkafka #4041; seen as a `--until-end` job that never
    /// exited), and queues must go before their consumer.
    pub fn close(mut self) {
        self.consumer.unsubscribe();
        let deadline = Instant::now() + CLOSE_WAIT;
        while Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(10));
            let assigned = self.consumer.assignment().map_or(0, |a| a.count());
            if assigned == 0 && !self.shared.rebalanced.swap(false, Ordering::AcqRel) {
                break;
            }
        }
        self.queues.clear();
        self.shared.split.lock().expect("not poisoned").clear();
    }
}

/// Buffers what a poll returned (`queue`: the partition's own queue it came from).
/// `now` is when the poll batch began: one clock read per batch, not per record (it
/// only times how long a partition has been quiet).
fn take(
    merge: &mut Merge,
    errors: &mut u64,
    queue: Option<&Queue>,
    result: KafkaResult<rdkafka::message::BorrowedMessage<'_>>,
    now: Instant,
) {
    match result {
        Ok(m) => merge.push(
            m.topic(),
            m.partition(),
            m.offset(),
            m.timestamp().to_millis(),
            m.payload().unwrap_or_default(),
            now,
        ),
        Err(KafkaError::PartitionEOF(p)) => match queue {
            Some(q) => merge.reached_end_of(&q.topic, q.partition),
            None => merge.reached_end(p),
        },
        Err(e) => {
            *errors += 1;
            tracing::warn!(error = %e, "consumer error");
        }
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
