//! A split partition queue read many records per call.
//!
//! rust-rdkafka's `PartitionQueue::poll` hands over one record per call, and every call
//! reads the clock four times (its own deadline; librdkafka's poll bookkeeping for
//! `max.poll.interval.ms`), takes the queue's lock and wraps the record in a
//! reference-counted event: 8.6 % of all samples of a `logheal run` on the Kafka bench,
//! an eighth of its correlate thread, went there (`perf`, 2026-12-02).
//! `rd_kafka_consume_batch_queue` does the bookkeeping once per batch and hands over
//! plain messages.
//!
//! This is the crate's only `unsafe` code. Its invariants: a `BatchQueue` is a counted
//! reference of its own on the partition's queue (released on drop, before the consumer
//! goes: `source::Queue` declares it before the consumer handle it holds); a message is
//! read only inside `take`'s callback and destroyed right after it, panic or not.

#![allow(unsafe_code)]

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;

/// Another handle on a partition's queue, read in batches.
pub struct BatchQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Where librdkafka writes the messages of one batch.
    slots: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: librdkafka's queue handles may be used from any thread (every operation takes
// the queue's lock); the handle is owned here and used through `&mut self` only.
unsafe impl Send for BatchQueue {}

impl BatchQueue {
    /// A handle on the queue of `topic`'s `partition`, which `split_partition_queue`
    /// has split off the consumer's (so it holds that partition's records and errors
    /// only, no callbacks). `None` if the client does not know the partition.
    pub fn of<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> Option<BatchQueue> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is live for the duration of the call (borrowed
        // consumer); the returned handle holds its own reference on the queue.
        let queue = unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        Some(BatchQueue {
            queue: NonNull::new(queue)?,
            slots: Vec::new(),
        })
    }

    /// Takes up to `max` records (and errors) that are waiting, without waiting for
    /// more, and hands each to `f` in the queue's order; how many there were.
    pub fn take(&mut self, max: usize, mut f: impl FnMut(Record<'_>)) -> usize {
        if max == 0 {
            return 0;
        }
        if self.slots.len() < max {
            self.slots.resize(max, std::ptr::null_mut());
        }
        // SAFETY: `slots` has room for `max` pointers; the queue handle is live.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, self.slots.as_mut_ptr(), max)
        };
        let n = usize::try_from(n).unwrap_or(0).min(max);
        // Destroys the batch's messages when dropped, also if `f` panics.
        struct Batch<'a>(&'a [*mut rd::rd_kafka_message_t]);
        impl Drop for Batch<'_> {
            fn drop(&mut self) {
                for &m in self.0 {
                    // SAFETY: each message was handed over by the batch call above
                    // and is destroyed exactly once, here.
                    unsafe { rd::rd_kafka_message_destroy(m) };
                }
            }
        }
        let batch = Batch(&self.slots[..n]);
        for &m in batch.0 {
            // SAFETY: the message is live until the batch is dropped, after this loop;
            // the record borrowed from it does not outlive the callback.
            f(Record(unsafe { &*m }));
        }
        n
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_partition` and is released
        // once, here.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// One message of a batch: a record, or an error the client reports for the partition
/// (its end, with `enable.partition.eof`).
pub struct Record<'a>(&'a rd::rd_kafka_message_t);

impl Record<'_> {
    /// The client's error code, if this is an error and not a record.
    pub fn error(&self) -> Option<RDKafkaErrorCode> {
        (self.0.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| RDKafkaErrorCode::from(self.0.err))
    }

    /// The text of an error (the client's own words, or its code's).
    pub fn error_text(&self) -> String {
        // SAFETY: for an error message librdkafka returns a NUL-terminated string
        // that lives as long as the message.
        let text = unsafe { rd::rd_kafka_message_errstr(self.0) };
        if text.is_null() {
            return format!("{:?}", self.error());
        }
        // SAFETY: not null, NUL-terminated, live as long as the message (above).
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }

    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    /// The record's bytes (empty for a null payload).
    pub fn payload(&self) -> &[u8] {
        if self.0.payload.is_null() {
            return &[];
        }
        // SAFETY: librdkafka's payload pointer and length describe bytes that live as
        // long as the message.
        unsafe { std::slice::from_raw_parts(self.0.payload.cast::<u8>(), self.0.len) }
    }

    /// The record's timestamp in milliseconds, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live; `kind` is a valid place to write the type.
        let ms = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ms >= 0)
            .then_some(ms)
    }
}
