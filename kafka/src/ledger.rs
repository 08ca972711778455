//! The action ledger: a compacted topic keyed by idempotency key. An action is written
//! as `pending` (and the write confirmed by the brokers) before it is called, and as
//! `done` with its outcome after. A consumer that starts, or rebuilds its state after a
//! rebalance, reads the ledger first: actions that its replay asks for again and that
//! are done are answered from the ledger instead of being called twice, and actions
//! left pending by a consumer that died are called again under the same key.
//!
//! It also carries what a consumer must hand its successor beside its offsets: the
//! silences, and each signals partition's floor (see [`Ledger::write_floors`]).

use crate::{doing, Error, KafkaConfig};
use logheal_pipeline::action::{ActionRequest, Outcome};
use logheal_pipeline::silence::Silence;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long reading the ledger at start, or confirming a write, may take.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after its hand-off a pending action is taken to be still in flight at the
/// consumer that wrote it. A consumer that takes an incident over in a rebalance (or
/// starts while the others run) replays it and asks for the same actions at once, while
/// the consumer that gave the incident up may still be calling one: calling it again
/// then would be a second call. Within the grace it waits for the outcome instead; past
/// it, the writer is taken to have died and the action is called again under its key.
/// A call that takes longer (a receiver's timeout times its attempts, with backoffs)
/// can still be made twice, under one idempotency key. A hand-off's age is taken from
/// its record's timestamp, the writer's clock: consumers' clocks must agree to well
/// within the grace.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_secs(30);

/// An action handed off but not known to be done: enough to call it again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingCall {
    pub receiver: String,
    pub action: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Entry {
    Pending(PendingCall),
    Done {
        outcome: Outcome,
    },
    /// A silence (key `silence/<id>`), as last written: its latest version wins.
    Silence {
        silence: Silence,
    },
    /// The floor of a signals partition (key `floor/<topic>/<partition>`): the decider's
    /// rewind point (event time, ns) when it last committed the partition; the greatest
    /// one written wins.
    Floor {
        at: i64,
    },
}

/// The ledger key of a silence.
fn silence_key(id: &str) -> String {
    format!("silence/{id}")
}

/// The ledger key of a signals partition's floor.
fn floor_key(topic: &str, partition: i32) -> String {
    format!("floor/{topic}/{partition}")
}

/// What to do with an action the engine asks for.
#[derive(Debug)]
pub enum Decision {
    /// Never handed off: write it down, then call.
    Call,
    /// Handed off less than [`IN_FLIGHT_GRACE`] ago and not done: whoever wrote it may
    /// be calling it still. Wait for its outcome (unless this consumer is the caller).
    InFlight,
    /// Handed off longer ago and never done (its caller died): call again only if
    /// nobody here is calling it already.
    Pending,
    /// Already done: this is the outcome.
    Done(Outcome),
}

/// Invariant: an entry is kept while a replay could still ask for its action. A
/// restarted consumer re-reads at most `max_rewind` of records, and an action comes due
/// at most an action delay after its record, so `done` entries written longer ago than
/// `max_rewind` plus [`RETENTION_MARGIN`] are dropped; `pending` ones are kept until
/// done (they are called again at start).
pub struct Ledger {
    topic: String,
    producer: FutureProducer,
    tail: BaseConsumer,
    /// Each key's entry, with when it was written (milliseconds since the epoch).
    entries: HashMap<String, (Entry, i64)>,
    runtime: tokio::runtime::Handle,
    retention: Duration,
    /// Entries dropped for being past the retention, and when that was last looked at.
    pub pruned: u64,
    pruned_at: i64,
    /// Silences read since the last `take_silences` (written by any consumer).
    silences: Vec<Silence>,
    /// Each signals partition's floor, by its key (one per partition: never pruned).
    floors: HashMap<String, i64>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        crate::source::close_promptly(&self.tail, crate::source::CLOSE_WAIT);
    }
}

/// Drops the `done` entries written before `horizon`; returns how many.
fn prune(entries: &mut HashMap<String, (Entry, i64)>, horizon: i64) -> usize {
    let before = entries.len();
    entries.retain(|_, (entry, written)| matches!(entry, Entry::Pending(_)) || *written >= horizon);
    before - entries.len()
}

/// Whether a hand-off written at `written` may still be in flight at `now` (ms).
fn in_flight(written: i64, now: i64) -> bool {
    now - written < IN_FLIGHT_GRACE.as_millis() as i64
}

/// What to do with an action whose ledger entry is `entry`, at `now` (ms).
fn decide(entry: Option<&(Entry, i64)>, now: i64) -> Decision {
    match entry {
        // Silences are kept apart; no action key holds one.
        None | Some((Entry::Silence { .. } | Entry::Floor { .. }, _)) => Decision::Call,
        Some((Entry::Pending(_), written)) if in_flight(*written, now) => Decision::InFlight,
        Some((Entry::Pending(_), _)) => Decision::Pending,
        Some((Entry::Done { outcome }, _)) => Decision::Done(outcome.clone()),
    }
}

/// Kept past `max_rewind`: more than any action delay a rule may reasonably give.
pub const RETENTION_MARGIN: Duration = Duration::from_secs(6 * 3600);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Ledger {
    /// Reads the whole ledger topic (which must exist), then keeps following it.
    pub fn open(config: &KafkaConfig, runtime: tokio::runtime::Handle) -> Result<Ledger, Error> {
        let topic = config.ledger_topic.clone();
        let fail = |what: &str| doing(format!("action ledger {topic}: {what}"));
        // One record per batch: ledger writes are few, and some Kafka-protocol brokers
        // (tansu 0.6) lose track of all but the first record of a batch.
        let producer: FutureProducer = config
            .client()
            .set("acks", "all")
            .set("batch.num.messages", "1")
            // A hand-off is waited for before the call: send it at once, not after
            // librdkafka's default 5 ms of lingering.
            .set("linger.ms", "0")
            .create()
            .map_err(fail("cannot create the producer"))?;
        let tail: BaseConsumer = config
            .client()
            .set("group.id", format!("{}-ledger", config.group))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(fail("cannot create the reader"))?;
        let metadata = tail
            .fetch_metadata(Some(&topic), LEDGER_TIMEOUT)
            .map_err(fail("no metadata"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::MissingTopic(format!(
                "action ledger topic {topic} does not exist: create it (compacted), e.g. `kafka-topics.sh --create --topic {topic} --config cleanup.policy=compact`"
            )));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning)
                .map_err(fail("bad partition"))?;
        }
        tail.assign(&tpl).map_err(fail("cannot assign"))?;
        let mut ledger = Ledger {
            topic,
            producer,
            tail,
            entries: HashMap::new(),
            retention: config.max_rewind + RETENTION_MARGIN,
            pruned: 0,
            pruned_at: 0,
            silences: Vec::new(),
            floors: HashMap::new(),
            runtime,
        };
        ledger.catch_up()?;
        Ok(ledger)
    }

    /// Reads what was written until now (by any consumer): all of it at start, and what
    /// a consumer that takes partitions over needs before it rebuilds their state.
    pub fn catch_up(&mut self) -> Result<(), Error> {
        let fail = |what: &str| doing(format!("action ledger {}: {what}", self.topic));
        let positions = self.tail.position().map_err(fail("no positions"))?;
        // Per partition: the next offset to read, and its end.
        let mut reading = HashMap::new();
        for e in positions.elements() {
            let (low, high) = self
                .tail
                .fetch_watermarks(&self.topic, e.partition(), LEDGER_TIMEOUT)
                .map_err(fail("no watermarks"))?;
            // Where reading stands; before the first record, the partition's first
            // offset still kept (an emptied partition has nothing to wait for).
            let next = e.offset().to_raw().unwrap_or(0).max(low);
            reading.insert(e.partition(), (next, high));
        }
        let deadline = Instant::now() + LEDGER_TIMEOUT;
        while reading.values().any(|(next, high)| next < high) {
            if Instant::now() > deadline {
                return Err(Error::Config(format!(
                    "action ledger {}: not read to its end within {LEDGER_TIMEOUT:?}",
                    self.topic
                )));
            }
            if let Some((partition, offset)) = self.read_one(Duration::from_millis(200)) {
                if let Some((next, _)) = reading.get_mut(&partition) {
                    *next = offset + 1;
                }
            }
        }
        Ok(())
    }

    /// Takes one record of the ledger, if one comes within `wait`.
    fn read_one(&mut self, wait: Duration) -> Option<(i32, i64)> {
        let message = match self.tail.poll(wait)? {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "action ledger read error");
                return None;
            }
        };
        let at = (message.partition(), message.offset());
        let written = message.timestamp().to_millis().unwrap_or_else(now_ms);
        let key = message.key().map(String::from_utf8_lossy);
        let entry = message
            .payload()
            .and_then(|p| serde_json::from_slice::<Entry>(p).ok());
        match (key, entry) {
            (Some(_), Some(Entry::Silence { silence })) => match silence.validated() {
                Ok(silence) => self.silences.push(silence),
                Err(e) => tracing::warn!(error = %e, "invalid silence in the ledger skipped"),
            },
            (Some(key), Some(Entry::Floor { at })) => {
                let floor = self.floors.entry(key.into_owned()).or_insert(at);
                *floor = (*floor).max(at);
            }
            (Some(key), Some(entry)) => {
                // A `done` is never overwritten by a late `pending`.
                if !matches!(
                    self.entries.get(key.as_ref()),
                    Some((Entry::Done { .. }, _))
                ) {
                    self.entries.insert(key.into_owned(), (entry, written));
                }
            }
            _ => tracing::warn!(
                partition = at.0,
                offset = at.1,
                "unreadable action ledger record skipped"
            ),
        }
        Some(at)
    }

    /// Takes in what other consumers wrote since (non-blocking), and drops the entries
    /// no replay can ask for any more.
    pub fn follow(&mut self) {
        while self.read_one(Duration::ZERO).is_some() {}
        self.prune(now_ms());
    }

    /// Drops `done` entries written before `now` minus the retention (at most once a
    /// minute: it reads every entry).
    pub fn prune(&mut self, now: i64) {
        if now - self.pruned_at < 60_000 {
            return;
        }
        self.pruned_at = now;
        let horizon = now - self.retention.as_millis() as i64;
        self.pruned += prune(&mut self.entries, horizon) as u64;
    }

    pub fn decide(&self, key: &str) -> Decision {
        decide(self.entries.get(key), now_ms())
    }

    /// Actions handed off and never reported done, with their keys and whether they may
    /// still be in flight (see [`IN_FLIGHT_GRACE`]).
    pub fn pending(&self) -> Vec<(String, PendingCall, bool)> {
        let now = now_ms();
        let mut out: Vec<_> = self
            .entries
            .iter()
            .filter_map(|(k, (e, written))| match e {
                Entry::Pending(h) => Some((k.clone(), h.clone(), in_flight(*written, now))),
                Entry::Done { .. } | Entry::Silence { .. } | Entry::Floor { .. } => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Writes the hand-off of `request` and waits until the brokers have it.
    pub fn hand_off(&mut self, request: &ActionRequest) -> KafkaResult<()> {
        let entry = Entry::Pending(PendingCall {
            receiver: request.receiver.to_string(),
            action: request.action.clone(),
            body: request.body.clone(),
        });
        self.write(&request.idempotency_key, &entry, true)?;
        self.entries
            .insert(request.idempotency_key.clone(), (entry, now_ms()));
        Ok(())
    }

    /// Records an outcome (delivered in the background; a lost one only means the
    /// action is called again under the same key).
    pub fn done(&mut self, key: &str, outcome: &Outcome) {
        let entry = Entry::Done {
            outcome: outcome.clone(),
        };
        if let Err(e) = self.write(key, &entry, false) {
            tracing::warn!(key, error = %e, "action outcome not written to the ledger");
        }
        self.entries.insert(key.to_string(), (entry, now_ms()));
    }

    fn write(&self, key: &str, entry: &Entry, confirm: bool) -> KafkaResult<()> {
        let payload = serde_json::to_vec(entry).expect("entries serialize");
        let record = FutureRecord::to(&self.topic).key(key).payload(&payload);
        if confirm {
            let delivery = self.producer.send(record, LEDGER_TIMEOUT);
            self.runtime
                .block_on(delivery)
                .map(|_| ())
                .map_err(|(e, _)| e)
        } else {
            let delivery = self.producer.send_result(record).map_err(|(e, _)| e)?;
            let key = key.to_string();
            self.runtime.spawn(async move {
                if let Ok(Err((e, _))) = delivery.await {
                    tracing::warn!(key, error = %e, "action outcome not written to the ledger");
                }
            });
            Ok(())
        }
    }

    /// Writes a silence (new, or ended) and waits until the brokers have it: a silence
    /// the API accepted survives a restart and reaches every consumer of the group.
    pub fn write_silence(&mut self, silence: &Silence) -> KafkaResult<()> {
        let entry = Entry::Silence {
            silence: silence.clone(),
        };
        self.write(&silence_key(&silence.id), &entry, true)
    }

    /// Raises the floor of each of the signals `partitions` of `topic` to `at` (event
    /// time, ns), in the background: the decider's rewind point when it commits them.
    /// At every commit: a decider loses partitions at any rebalance, without notice, and
    /// the revocation commits the last position again. (Writing every few seconds
    /// instead let repeats through: the three-consumer test failed again.) The ledger
    /// topic is compacted, so one record per partition stays.
    ///
    /// Invariant: a signal read at or after the committed offset that stands for a time
    /// before the floor is a repeat: a correlator that re-read its input after a
    /// rebalance published it again, after the decider had committed past the original.
    /// The original was taken by the decider (its time is before the point, so it was
    /// delivered), and the state rebuilt from the point does not need it. Offsets
    /// cannot carry the point themselves: some brokers (tansu 0.6) drop the metadata of
    /// a commit. A stale floor (lower, read before the latest was written) only filters
    /// less; a floor above the committed point filters only records the checkpoint
    /// had already passed (see `offsets.rs`).
    pub fn write_floors(&mut self, topic: &str, partitions: impl Iterator<Item = i32>, at: i64) {
        for partition in partitions {
            let key = floor_key(topic, partition);
            if self.floors.get(&key).is_some_and(|f| *f >= at) {
                continue;
            }
            if let Err(e) = self.write(&key, &Entry::Floor { at }, false) {
                tracing::warn!(key, error = %e, "signals floor not written to the ledger");
            }
            self.floors.insert(key, at);
        }
    }

    /// The floor of a signals partition, if one was written.
    pub fn floor(&self, topic: &str, partition: i32) -> Option<i64> {
        self.floors.get(&floor_key(topic, partition)).copied()
    }

    /// Silences read from the ledger since the last call (at start: all of them).
    pub fn take_silences(&mut self) -> Vec<Silence> {
        std::mem::take(&mut self.silences)
    }

    /// Waits for outcomes still being written.
    pub fn flush(&self) -> KafkaResult<()> {
        self.producer.flush(LEDGER_TIMEOUT)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl PendingCall {
    /// A request that calls this pending hand-off again, under its idempotency `key`.
    pub fn into_request(self, id: u64, key: String) -> ActionRequest {
        let handoff = self;
        ActionRequest {
            id,
            receiver: handoff.receiver.as_str().into(),
            action: handoff.action,
            idempotency_key: key,
            body: handoff.body,
            expect_status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_entries_past_the_retention_go_and_pending_ones_stay() {
        let done = || Entry::Done {
            outcome: Outcome::Succeeded {
                status: 200,
                attempts: 1,
            },
        };
        let pending = Entry::Pending(PendingCall {
            receiver: "r".into(),
            action: "a".into(),
            body: String::new(),
        });
        let mut entries = HashMap::new();
        entries.insert("old-done".to_string(), (done(), 1_000));
        entries.insert("old-pending".to_string(), (pending, 1_000));
        entries.insert("new-done".to_string(), (done(), 9_000));
        assert_eq!(prune(&mut entries, 5_000), 1);
        let mut kept: Vec<_> = entries.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["new-done", "old-pending"]);
    }

    #[test]
    fn a_fresh_hand_off_is_in_flight_and_an_old_one_is_called_again() {
        let pending = Entry::Pending(PendingCall {
            receiver: "r".into(),
            action: "a".into(),
            body: String::new(),
        });
        let grace = IN_FLIGHT_GRACE.as_millis() as i64;
        let written = 1_000_000;
        let at = |now| decide(Some(&(pending.clone(), written)), now);
        assert!(matches!(at(written), Decision::InFlight));
        assert!(matches!(at(written + grace - 1), Decision::InFlight));
        assert!(matches!(at(written + grace), Decision::Pending));
        assert!(matches!(decide(None, written), Decision::Call));
        let done = Entry::Done {
            outcome: Outcome::Succeeded {
                status: 200,
                attempts: 1,
            },
        };
        assert!(matches!(
            decide(Some(&(done, written)), written),
            Decision::Done(_)
        ));
    }
}
