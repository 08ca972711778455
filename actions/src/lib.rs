//! logheal-actions: the HTTP side of the actions (`reqwest` on a tokio runtime). Receiver
//! resolution from the environment and secret files (`receivers`), and the executor that
//! calls webhooks, probes and Slack with idempotency keys, signatures, retries and
//! circuit breakers (`executor`). The engine hands it `ActionRequest`s and gets
//! `Outcome`s back (`logheal_pipeline::action`); it never waits on it.

#![forbid(unsafe_code)]

pub mod executor;
pub mod receivers;
