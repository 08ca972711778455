//! The Kafka source: one consumer in a consumer group, polled on the engine's thread.
//!
//! Records go through the partition merge into the engine. Offsets are committed at the
//! low-water mark of the live state (see `offsets`), so a consumer that dies loses
//! nothing: its successor re-reads from there. A rebalance (eager: every partition is
//! revoked, then the new set assigned) commits synchronously, and the caller rebuilds its
//! state from the committed offsets of the new assignment.
//!
//! Each assigned partition's records come from a queue of their own (split off in the
//! rebalance callback), taken many per call (`batch`) only while the partition holds
//! less than its share of the merge's buffer: the client stops fetching a partition
//! whose queue is full, so one partition's backlog waits in the client instead of
//! crowding the others out of the merge (which would then have to release records out
//! of time order).
//!
//! One consumer can feed several threads (`Source::subscribe_workers`): the queues of
//! an assignment are dealt out among the workers (sorted by topic and partition, the
//! *i*-th to worker *i* mod N), each with a merge and commit positions of its own. The
//! group sees one member, so adding a thread costs no rebalance. Worker 0 also polls the
//! consumer's own queue, where the rebalance callbacks run. Invariants: a partition's
//! records reach exactly one worker's merge; a worker commits only partitions of the
//! assignment it last took (`Source::commit` checks the deal, which a revoke
//! renews before its callback commits).

use crate::batch::{BatchQueue, Record};
use crate::merge::Merge;
use crate::KafkaConfig;
use logheal_parsers::EventTime;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
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

/// How long leaving the group may take to serve its revocation (see `Source::close`),
/// and closing a consumer (see `close_promptly`).
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Records taken from the client per poll before the merge runs.
const POLL_BATCH: usize = 4096;

/// Records taken from a partition's queue per call, at most (see `batch`).
const QUEUE_BATCH: usize = 256;

/// The record size a batch's length is first reckoned with, before any was seen.
const MIN_RECORD_GUESS: usize = 256;

/// What the client's callbacks share with the polling threads.
#[derive(Default)]
pub struct Shared {
    /// The last positions each worker committed, to commit again synchronously on a
    /// revoke.
    committed: Mutex<Vec<Option<TopicPartitionList>>>,
    /// How many times partitions were dealt out: at every assignment, and at every
    /// revoke (an empty share to each worker). Changed only with `shares` locked, so
    /// read under that lock it names the shares found there.
    deal: AtomicU64,
    /// Records behind the brokers' high watermarks, summed over the assignment (from
    /// the client's statistics; -1 until the first report).
    pub lag: AtomicI64,
    /// Rebalances seen.
    pub rebalances: AtomicI64,
    /// Per worker, the queues split off for it at the last deal, until it takes them.
    shares: Mutex<Vec<Option<Share>>>,
    /// Per worker: rung by the client when one of its queues gets something (worker
    /// 0's also by the consumer's own queue).
    bells: Vec<Bell>,
    /// Workers other than 0 that have closed (worker 0 leaves the group after them).
    closed: AtomicUsize,
}

/// One worker's part of an assignment.
#[derive(Default)]
struct Share {
    queues: Vec<Queue>,
    /// Partitions whose queue could not be split: their records come through the
    /// consumer's own queue, which worker 0 polls.
    unsplit: Vec<(Arc<str>, i32)>,
}

impl Shared {
    fn new(workers: usize) -> Shared {
        Shared {
            committed: Mutex::new((0..workers).map(|_| None).collect()),
            lag: AtomicI64::new(-1),
            shares: Mutex::new((0..workers).map(|_| None).collect()),
            bells: (0..workers).map(|_| Bell::default()).collect(),
            ..Shared::default()
        }
    }

    fn workers(&self) -> usize {
        self.bells.len()
    }

    /// A revoke: every worker is dealt an empty share, then the positions the workers
    /// kept are taken (one list), to be committed once more before the partitions go.
    fn revoke(&self) -> Option<TopicPartitionList> {
        self.deal((0..self.workers()).map(|_| Share::default()).collect());
        let mut kept = self.committed.lock().expect("not poisoned");
        union(kept.iter_mut().filter_map(Option::take))
    }

    /// Keeps the positions `worker` just committed under deal `dealt`, for the next
    /// revoke to commit again, unless a revoke came meanwhile: `revoke` deals before it
    /// takes the kept positions, so a deal unchanged here (with them locked) means it has
    /// not taken them yet. Kept after a revoke, they would be committed at the one after
    /// it, over the progress of whichever consumer held the partitions in between.
    fn keep_committed(&self, worker: usize, dealt: u64, positions: TopicPartitionList) {
        let mut kept = self.committed.lock().expect("not poisoned");
        if self.deal.load(Ordering::Acquire) == dealt {
            kept[worker] = Some(positions);
        }
    }

    /// Deals `shares` out (one per worker).
    fn deal(&self, shares: Vec<Share>) {
        let mut dealt = self.shares.lock().expect("not poisoned");
        *dealt = shares.into_iter().map(Some).collect();
        self.deal.fetch_add(1, Ordering::AcqRel);
        drop(dealt);
        // Every worker takes its share at once, not at the end of its wait.
        for bell in &self.bells {
            bell.ring();
        }
    }
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
    /// The queue's records are read through this handle, many per call (declared
    /// before `_split`, whose consumer handle must outlive it).
    batch: BatchQueue,
    /// Split off the consumer's queue, with a callback that rings the worker's bell;
    /// held for that (dropping it takes the callback away), read through `batch`.
    _split: PartitionQueue<Context>,
    /// The largest record seen, for the size of a batch that fits the room left.
    largest: usize,
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
        if let Rebalance::Revoke(_) | Rebalance::Error(_) = rebalance {
            // Every partition is taken away (eager protocol; an error unassigns too).
            // From here on no worker commits what it still holds (see `Source::commit`).
            if let Some(tpl) = self.shared.revoke() {
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
                let workers = self.shared.workers();
                let mut shares: Vec<Share> = (0..workers).map(|_| Share::default()).collect();
                let mut elements: Vec<_> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                elements.sort();
                if let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) {
                    for (i, (topic, partition)) in elements.into_iter().enumerate() {
                        let w = i % workers;
                        let split = consumer.split_partition_queue(&topic, partition);
                        let batch = BatchQueue::of(&consumer, &topic, partition);
                        let (Some(mut queue), Some(batch)) = (split, batch) else {
                            shares[0].unsplit.push((topic.into(), partition));
                            continue;
                        };
                        let shared = self.shared.clone();
                        queue.set_nonempty_callback(move || shared.bells[w].ring());
                        shares[w].queues.push(Queue {
                            topic: topic.into(),
                            partition,
                            batch,
                            _split: queue,
                            largest: 0,
                        });
                    }
                }
                self.shared.deal(shares);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
        self.shared.rebalances.fetch_add(1, Ordering::Relaxed);
    }
}

/// One list of the positions of several.
fn union(lists: impl Iterator<Item = TopicPartitionList>) -> Option<TopicPartitionList> {
    let mut all: Option<TopicPartitionList> = None;
    for tpl in lists {
        match &mut all {
            None => all = Some(tpl),
            Some(all) => {
                for e in tpl.elements() {
                    let _ = all.add_partition_offset(e.topic(), e.partition(), e.offset());
                }
            }
        }
    }
    all
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
    /// The queues of this worker's partitions: records are taken from a partition only
    /// while it holds less than its share of the merge's buffer, so that a partition
    /// whose records arrive first (a broker may fill a whole fetch with one partition)
    /// cannot crowd out the others and force the merge to release out of time order.
    /// (Declared before `consumer`: queues must go before their consumer.)
    queues: Vec<Queue>,
    consumer: Arc<BaseConsumer<Context>>,
    pub shared: Arc<Shared>,
    pub merge: Merge,
    /// Records the client delivered with an error (counted, never stopping the partition).
    pub errors: u64,
    /// Which of the consumer's workers this is (0 also polls the consumer's own queue).
    worker: usize,
    /// The deal whose share this worker holds.
    dealt: u64,
}

impl Source {
    /// Joins the group and subscribes to the configured topics.
    pub fn subscribe(config: &KafkaConfig) -> KafkaResult<Source> {
        let mut workers = Self::subscribe_workers(config, 1)?;
        Ok(workers.pop().expect("one worker"))
    }

    /// Joins the group as one consumer whose partitions are shared out among `workers`
    /// sources, one per thread (each with its own merge, of an equal part of the
    /// configured buffer). Worker 0 must be polled for the others to get partitions.
    pub fn subscribe_workers(config: &KafkaConfig, workers: usize) -> KafkaResult<Vec<Source>> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared::new(workers));
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
            // a joining consumer (scaling out) waits up to that long for the others to
            // give their partitions up.
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
        consumer.set_nonempty_callback(move || bell.bells[0].ring());
        let consumer = Arc::new(consumer);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let buffer = config.merge_buffer_bytes / workers;
        Ok((0..workers)
            .map(|worker| Source {
                queues: Vec::new(),
                consumer: consumer.clone(),
                shared: shared.clone(),
                merge: Merge::new(buffer, config.merge_idle),
                errors: 0,
                worker,
                dealt: 0,
            })
            .collect())
    }

    /// Which of the consumer's workers this source is (rebalances are counted once,
    /// in `shared`, for all of them).
    pub fn worker(&self) -> usize {
        self.worker
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
            // The consumer's own queue (worker 0): callbacks (a rebalance splits the new
            // partitions' queues), errors, and records of any partition not split.
            if self.worker == 0 {
                let (came, changed) = self.serve_consumer(&mut taken, now);
                got |= came;
                rebalanced |= changed;
            }
            rebalanced |= self.take_share();
            // Each partition's queue, while the partition holds less than its share: in
            // batches of about the room left (by the largest record seen so far).
            let share = self.merge.max_buffered_bytes() / self.queues.len().max(1);
            for q in &mut self.queues {
                let mut room = share.saturating_sub(self.merge.buffered_of(&q.topic, q.partition));
                while room > 0 && taken < POLL_BATCH {
                    let want = batch_len(room, q.largest, POLL_BATCH - taken);
                    let n = q.batch.take(want, |record| {
                        let len = record.payload().len();
                        q.largest = q.largest.max(len);
                        room = room.saturating_sub(len.max(1));
                        take_record(
                            &mut self.merge,
                            &mut self.errors,
                            &q.topic,
                            q.partition,
                            &record,
                            now,
                        );
                    });
                    if n == 0 {
                        break;
                    }
                    taken += n;
                    got = true;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if got || rebalanced || taken >= POLL_BATCH || left.is_zero() {
                break;
            }
            // Nothing yet: wait until a queue gets something (or the time is up), then
            // look at them all again. Worker 0 also serves the consumer's callbacks,
            // so it looks at least every 100 ms.
            let left = if self.worker == 0 {
                left
            } else {
                left.min(Duration::from_millis(100))
            };
            self.shared.bells[self.worker].wait(left);
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

    /// Polls the consumer's own queue (worker 0's job) until it is empty or the batch is
    /// full: whether records came, and whether the assignment changed meanwhile.
    fn serve_consumer(&mut self, taken: &mut usize, now: Instant) -> (bool, bool) {
        // A handle of its own: the records borrow it while `self` changes.
        let consumer = Arc::clone(&self.consumer);
        let (mut got, mut rebalanced) = (false, false);
        while *taken < POLL_BATCH {
            let result = consumer.poll(Duration::ZERO);
            // Rebalance callbacks run inside `poll`: what comes next belongs to the new
            // assignment, what was buffered before does not.
            rebalanced |= self.take_share();
            let Some(result) = result else { break };
            *taken += 1;
            got = true;
            if matches!(&result, Ok(m) if self.stray(m)) {
                continue;
            }
            take(&mut self.merge, &mut self.errors, result, now);
        }
        (got, rebalanced)
    }

    /// Takes this worker's share of a new assignment, if there is one: the merge forgets
    /// what it buffered and learns the new partitions.
    fn take_share(&mut self) -> bool {
        if self.shared.deal.load(Ordering::Acquire) == self.dealt {
            return false;
        }
        let share = {
            let mut shares = self.shared.shares.lock().expect("not poisoned");
            self.dealt = self.shared.deal.load(Ordering::Acquire);
            shares[self.worker].take().unwrap_or_default()
        };
        self.merge.clear();
        let now = Instant::now();
        for q in &share.queues {
            self.merge.assign(&q.topic, q.partition, now);
        }
        for (topic, partition) in &share.unsplit {
            self.merge.assign(topic, *partition, now);
        }
        self.queues = share.queues;
        true
    }

    /// Whether a record worker 0 found in the consumer's own queue belongs to another
    /// worker's partition (fetched before its queue was split): then it is not this
    /// worker's to buffer, and the partition is sought back to it, so that its owner
    /// reads it from its own queue.
    fn stray(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) -> bool {
        if self.shared.workers() == 1 || self.merge.knows(m.topic(), m.partition()) {
            return false;
        }
        self.errors += 1;
        tracing::warn!(
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            "a record of another thread's partition came through the consumer's queue; that partition is read again from it"
        );
        if let Err(e) = self.consumer.seek(
            m.topic(),
            m.partition(),
            Offset::Offset(m.offset()),
            Duration::from_secs(5),
        ) {
            tracing::warn!(error = %e, "seek failed");
        }
        true
    }

    /// Commits, for every partition of this worker, the first offset still needed to
    /// rebuild the state from `point` on (or, with `point` = `EventTime::MAX`, everything
    /// processed). Nothing is committed once the assignment it was read under is revoked:
    /// the partitions' next owner commits them.
    pub fn commit(&mut self, point: EventTime, mode: CommitMode) -> KafkaResult<()> {
        // A revoke that comes between this check and the commit's request finds the
        // request sent under the group generation the partitions were still held in
        // (a new generation needs the revoke's callback to return first).
        if self.shared.deal.load(Ordering::Acquire) != self.dealt {
            return Ok(());
        }
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
        self.shared.keep_committed(self.worker, self.dealt, tpl);
        Ok(())
    }

    /// Whether an `--until-end` job should ask the brokers if it has drained: the poll
    /// brought nothing and nothing is buffered, or every partition reported its end and
    /// handed on all it had (then at once, not after a poll's timeout with nothing).
    pub fn quiet(&self, polled: &Polled) -> bool {
        (*polled == Polled::Idle && self.merge.buffered_bytes() == 0) || self.merge.caught_up()
    }

    /// Whether every partition of this worker has been processed up to its high
    /// watermark (asks the brokers; for `--until-end`).
    pub fn drained(&self, timeout: Duration) -> KafkaResult<bool> {
        if self.merge.partitions.is_empty() {
            return Ok(false);
        }
        // Where reading starts for a partition nothing was read from yet: the group's
        // committed offset (a consumer that takes over a drained partition is drained).
        let committed = self.consumer.committed(timeout)?;
        // Asked of the probe: on the consumer's own connection the query would wait
        // behind its fetch exactly when the input is quiet.
        let probe = self.consumer.context().probe()?;
        for p in &self.merge.partitions {
            let (low, high) = probe.fetch_watermarks(&p.topic, p.partition, timeout)?;
            let start = committed
                .find_partition(&p.topic, p.partition)
                .and_then(|c| match c.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(low);
            if p.checkpoints.next().unwrap_or(start) < high {
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

    /// Leaves the group (after a final commit by the caller; with several workers,
    /// worker 0 leaves once the others closed, or after `CLOSE_WAIT`).
    ///
    /// The revocation that leaving causes is served here, and the partition queues are
    /// destroyed, before the client closes: a close that finds a rebalance still to
    /// serve asks librdkafka for its rebalance protocol from inside the callback, which
    /// can wait forever (librdkafka #4041; seen as a `--until-end` job that never
    /// exited), and queues must go before their consumer.
    pub fn close(mut self) {
        self.queues.clear();
        if self.worker != 0 {
            self.shared.closed.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let others = self.shared.workers() - 1;
        let deadline = Instant::now() + CLOSE_WAIT;
        while self.shared.closed.load(Ordering::Acquire) < others && Instant::now() < deadline {
            // Callbacks are served meanwhile.
            let _ = self.consumer.poll(Duration::from_millis(10));
        }
        let mut deal = self.shared.deal.load(Ordering::Acquire);
        self.consumer.unsubscribe();
        let deadline = Instant::now() + CLOSE_WAIT;
        while Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(10));
            // Done once nothing is assigned and no callback ran during the last poll.
            let assigned = self.consumer.assignment().map_or(0, |a| a.count());
            let now = self.shared.deal.load(Ordering::Acquire);
            if assigned == 0 && now == deal {
                break;
            }
            deal = now;
        }
        self.shared
            .shares
            .lock()
            .expect("not poisoned")
            .iter_mut()
            .for_each(|s| *s = None);
        close_promptly(&self.consumer, CLOSE_WAIT);
    }
}

/// Closes a group consumer (leaves its group) and waits for the close in short polls.
///
/// rust-rdkafka's `Drop` closes a consumer that was not closed and then polls in steps
/// of 100 ms until the close is done; librdkafka ends such a poll at the close only by
/// a yield, which that poll loop does not return on, so each drop took a full 100 ms
/// (measured: 100 ms per consumer at every exit of `logheal run`). After this close,
/// `Drop`'s own close fails ("Consumer already closed") and it skips its polls.
pub(crate) fn close_promptly<C: ConsumerContext>(consumer: &BaseConsumer<C>, limit: Duration) {
    if consumer.close_queue().is_err() {
        return; // Not a group consumer, or closed already: `Drop` has nothing to wait for.
    }
    let deadline = Instant::now() + limit;
    while !consumer.closed() && Instant::now() < deadline {
        // Serves what the close posts (a revocation, if anything was still assigned).
        let _ = consumer.poll(Duration::from_millis(1));
    }
}

/// How many records to ask a partition's queue for: about as many as fit `room` bytes
/// if none is larger than the largest seen so far, at least one, at most `QUEUE_BATCH`
/// and `left`.
fn batch_len(room: usize, largest: usize, left: usize) -> usize {
    (room / largest.max(MIN_RECORD_GUESS))
        .clamp(1, QUEUE_BATCH)
        .min(left)
}

/// Buffers a record (or takes note of an error) read from the queue of `topic`'s
/// `partition` (its records are of that topic: the name is not read per record). `now`:
/// as in `take`.
fn take_record(
    merge: &mut Merge,
    errors: &mut u64,
    topic: &str,
    partition: i32,
    record: &Record<'_>,
    now: Instant,
) {
    match record.error() {
        None => merge.push(
            topic,
            partition,
            record.offset(),
            record.timestamp(),
            record.payload(),
            now,
        ),
        Some(RDKafkaErrorCode::PartitionEOF) => merge.reached_end_of(topic, partition),
        Some(_) => {
            *errors += 1;
            tracing::warn!(
                topic,
                partition,
                error = record.error_text(),
                "consumer error"
            );
        }
    }
}

/// Buffers what the consumer's own queue returned (records of a partition whose queue
/// could not be split). `now` is when the poll batch began: one clock read per batch,
/// not per record (it only times how long a partition has been quiet).
fn take(
    merge: &mut Merge,
    errors: &mut u64,
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
        Err(KafkaError::PartitionEOF(p)) => merge.reached_end(p),
        Err(e) => {
            *errors += 1;
            tracing::warn!(error = %e, "consumer error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_asks_for_what_fits_the_room_and_never_for_nothing() {
        // Small records: the batch's bound.
        assert_eq!(batch_len(16 << 20, 200, POLL_BATCH), QUEUE_BATCH);
        // Records of up to 1 MB seen, 4 MB of room: 4 of them.
        assert_eq!(batch_len(4 << 20, 1 << 20, POLL_BATCH), 4);
        // Less room than one record: still one (the partition must go on).
        assert_eq!(batch_len(10, 1 << 20, POLL_BATCH), 1);
        // Nothing seen yet: reckoned at MIN_RECORD_GUESS bytes a record.
        assert_eq!(batch_len(10 * MIN_RECORD_GUESS, 0, POLL_BATCH), 10);
        // The poll's own bound.
        assert_eq!(batch_len(16 << 20, 200, 3), 3);
    }

    fn positions(partition: i32, offset: i64) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", partition, Offset::Offset(offset))
            .expect("a valid offset");
        tpl
    }

    fn offsets(tpl: &TopicPartitionList) -> Vec<(i32, i64)> {
        tpl.elements()
            .iter()
            .map(|e| (e.partition(), e.offset().to_raw().expect("an offset")))
            .collect()
    }

    #[test]
    fn a_revoke_commits_what_each_worker_kept_once() {
        let shared = Shared::new(2);
        let dealt = shared.deal.load(Ordering::Acquire);
        shared.keep_committed(0, dealt, positions(0, 10));
        shared.keep_committed(1, dealt, positions(1, 20));
        let taken = shared.revoke().expect("both workers kept positions");
        assert_eq!(offsets(&taken), [(0, 10), (1, 20)]);
        assert!(shared.revoke().is_none(), "taken once");
    }

    #[test]
    fn positions_committed_under_a_revoked_deal_are_not_kept_for_the_next_revoke() {
        let shared = Shared::new(2);
        // Worker 1 read the deal and committed under it; the revoke came before it kept
        // its positions.
        let dealt = shared.deal.load(Ordering::Acquire);
        assert!(shared.revoke().is_none());
        shared.keep_committed(1, dealt, positions(1, 20));
        // The partition went to another consumer meanwhile; the next revoke must not
        // commit the old position over that consumer's progress.
        assert!(shared.revoke().is_none());
        // Under the deal it holds now, a worker's positions are kept.
        let now = shared.deal.load(Ordering::Acquire);
        shared.keep_committed(1, now, positions(1, 30));
        assert_eq!(offsets(&shared.revoke().expect("kept")), [(1, 30)]);
    }
}
