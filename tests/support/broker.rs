//! The Kafka side of the end-to-end tests: the broker the test tooling started (or one
//! a test starts and restarts itself), topics, producers, committed offsets. The
//! `logheal run` consumers are in `consumer.rs`.
#![allow(dead_code)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A JSON line as a record: (its trace id as the key, if `keyed`), the line, its time.
fn stamped(line: &str, keyed: bool) -> (Option<String>, Vec<u8>, Option<i64>) {
    let v: Value = serde_json::from_str(line).unwrap();
    let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let key = keyed
        .then(|| v["trace_id"].as_str().map(String::from))
        .flatten();
    (key, line.as_bytes().to_vec(), Some(ts))
}

static TOPICS: AtomicU32 = AtomicU32::new(0);

pub struct Broker {
    pub address: String,
    /// A broker this test started (and stops when dropped).
    own: Option<Child>,
}

fn reachable(address: &str) -> bool {
    TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(2)).is_ok()
}

impl Broker {
    /// The broker the test tooling started.
    pub fn from_env() -> Broker {
        let address = std::env::var("LOGHEAL_TEST_BROKERS").unwrap_or_else(|_| {
            panic!(
                "no Kafka broker for the tests: run them with scripts/test.sh (it installs \
                 and starts tansu), or start a broker and set LOGHEAL_TEST_BROKERS=127.0.0.1:PORT"
            )
        });
        assert!(
            reachable(&address),
            "no Kafka broker answers at LOGHEAL_TEST_BROKERS={address}: start one with \
             scripts/test.sh (or `scripts/broker.sh start`)"
        );
        Broker { address, own: None }
    }

    /// A broker of this test's own, to stop and restart (tansu, in memory).
    pub fn start_own() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Broker::spawn(format!("127.0.0.1:{port}"))
    }

    fn spawn(address: String) -> Broker {
        let tansu = std::env::var("LOGHEAL_TANSU").unwrap_or_else(|_| "tansu".into());
        let url = format!("tcp://{address}");
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{tansu}` ({e}): install it with scripts/broker.sh install, \
                     or set LOGHEAL_TANSU to its path"
                )
            });
        let deadline = Instant::now() + TIMEOUT;
        while !reachable(&address) {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            address,
            own: Some(child),
        }
    }

    /// Stops this test's broker (losing everything, as memory storage does).
    pub fn stop_own(&mut self) {
        let mut child = self.own.take().expect("only a test's own broker stops");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts this test's broker again on the same address.
    pub fn start_again(&self) -> Broker {
        assert!(self.own.is_none(), "stop it first");
        Broker::spawn(self.address.clone())
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.address);
        config
    }

    /// Creates a topic with a name no other test uses.
    pub fn topic(&self, name: &str, partitions: i32) -> String {
        let n = TOPICS.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let topic = format!("{name}-{}-{n}-{nanos}", std::process::id());
        self.recreate_topic(&topic, partitions);
        topic
    }

    pub fn recreate_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime
            .block_on(admin.create_topics([&new], &AdminOptions::new()))
            .unwrap();
        for r in result {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
    }

    fn produce(
        &self,
        topic: &str,
        records: impl Iterator<Item = (Option<String>, Vec<u8>, Option<i64>)>,
    ) {
        // One record per batch: tansu 0.6 mishandles batches of several records. It
        // answers a fetch from an offset inside one with the next batch (Kafka returns
        // the batch and the client skips what precedes the offset), and its high
        // watermark counts only the first record of the last batch.
        let producer: BaseProducer = self
            .client()
            .set("linger.ms", "5")
            .set("batch.num.messages", "1")
            .set("message.max.bytes", "10000000")
            .create()
            .unwrap();
        for (key, payload, ts) in records {
            let mut record = BaseRecord::<String, Vec<u8>>::to(topic).payload(&payload);
            if let Some(key) = &key {
                record = record.key(key);
            }
            if let Some(ts) = ts {
                record = record.timestamp(ts);
            }
            logheal_kafka::send_waiting(&producer, record)
                .unwrap_or_else(|e| panic!("cannot produce to {topic}: {e}"));
        }
        producer.flush(TIMEOUT).unwrap();
    }

    /// JSON lines keyed by their trace id, stamped with their event time.
    pub fn produce_keyed(&self, topic: &str, lines: &[String]) {
        self.produce(topic, lines.iter().map(|l| stamped(l, true)));
    }

    /// JSON lines without keys (spread over the partitions by the producer), stamped
    /// with their event time as a log shipper does.
    pub fn produce_unkeyed(&self, topic: &str, lines: &[String]) {
        self.produce(topic, lines.iter().map(|l| stamped(l, false)));
    }

    /// Payloads with the keys and Kafka timestamps given.
    pub fn produce_with(&self, topic: &str, records: &[(Option<String>, Vec<u8>, Option<i64>)]) {
        self.produce(topic, records.iter().cloned());
    }

    /// Arbitrary payloads, unkeyed and unstamped.
    pub fn produce_raw(&self, topic: &str, payloads: &[Vec<u8>]) {
        self.produce(topic, payloads.iter().map(|p| (None, p.clone(), None)));
    }

    /// The offsets `group` committed on `topic`'s partitions (0 where none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = self.client().set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(tpl, TIMEOUT).unwrap();
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).unwrap().offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                },
            )
            .collect()
    }

    /// Every record of `topic`: (partition, key, payload).
    pub fn read_all(&self, topic: &str, partitions: i32) -> Vec<(i32, Option<String>, Vec<u8>)> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", format!("{topic}-reader"))
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut remaining = 0;
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
            let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT).unwrap();
            remaining += high - low;
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        while remaining > 0 && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                out.push((m.partition(), key, m.payload().unwrap_or_default().to_vec()));
                remaining -= 1;
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.own {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
