//! Durable signals: stored, then published, through the one publish path.
//!
//! An accepted signal is in the store before anyone hears of it; when the store cannot take
//! it nothing is published, so a retrying publisher loses nothing. A `signal_id` is unique
//! forever (the store enforces it): a retry by the same API key gets the first answer and
//! publishes nothing; the same id from another key is refused (409), so no publisher can
//! shadow another's signals or be answered with them. A signal stored but not published (the
//! process died in between) is published at the next start ([`Publisher::publish_pending`]),
//! or by the first retry that finds it.

use serde_json::value::RawValue;
use serde_json::{json, Value};
use signalhub_schema::signal::{Signal, SignalError};

use super::{Message, PublishFailure, Publisher};
use crate::store::{Inserted, NewSignal, StoreError};

/// What a signal publish answers.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalReply {
    /// Stored and published now: the answer, as recorded with the signal.
    Published(Value),
    /// The `signal_id` was accepted before: its first answer, nothing published.
    Answered(String),
}

/// Why a signal was not published.
#[derive(Debug, thiserror::Error)]
pub enum SignalFailure {
    /// Another request with this `signal_id` is being stored or published right now.
    #[error("a signal with this signal_id is still being processed")]
    InFlight,
    /// The `signal_id` was stored by another publisher: ids are unique forever, and one
    /// publisher's retry must not be answered with (or shadow) another's signal.
    #[error("this signal_id was stored by another publisher; choose another signal_id")]
    TakenByAnotherPublisher,
    /// The store could not take it (a retry may succeed); nothing was published.
    #[error("the signal store is unavailable: {0}")]
    StoreUnavailable(String),
    /// The store failed otherwise.
    #[error("the signal store failed: {0}")]
    Store(StoreError),
    /// A signal found stored, unpublished, no longer validates.
    #[error(transparent)]
    Invalid(#[from] SignalError),
    /// Stored, but publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishFailure),
}

impl From<StoreError> for SignalFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => SignalFailure::StoreUnavailable(why),
            other => SignalFailure::Store(other),
        }
    }
}

/// Removes a `signal_id` from the in-flight set when the publish ends, however it ends.
struct InFlight<'a> {
    publisher: &'a Publisher,
    signal_id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.publisher
            .state
            .signals_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.signal_id);
    }
}

impl Publisher {
    /// Stores `signal` for `publisher` (an API key's fingerprint or a source's name), then
    /// publishes it on its channels; a `signal_id` the same publisher stored before gets its
    /// first answer (or, stored but never published, is published now); one another
    /// publisher stored is refused.
    pub async fn publish_signal(
        &self,
        signal: &Signal,
        publisher: &str,
    ) -> Result<SignalReply, SignalFailure> {
        let state = &self.state;
        let ladder = state.hub.ladder();
        let record = signal.to_json(ladder);
        let claimed = state
            .signals_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(signal.signal_id.clone());
        if !claimed {
            return Err(SignalFailure::InFlight);
        }
        let _in_flight = InFlight {
            publisher: self,
            signal_id: signal.signal_id.clone(),
        };
        let new = NewSignal {
            signal_id: signal.signal_id.clone(),
            record_json: record.clone(),
            pair: signal.pair.clone(),
            signal_type: signal.signal_type.clone(),
            confidence: signal.confidence_score.as_f64(),
            tier_rank: signal.tier.0,
            timestamp: signal.timestamp,
            publisher: Some(publisher.to_string()),
        };
        match state.store.insert_signal(&new).await? {
            Inserted::New { .. } => Ok(SignalReply::Published(
                self.publish_and_mark(signal, &record).await?,
            )),
            Inserted::Duplicate(row)
                if row.publisher.as_deref().is_some_and(|p| p != publisher) =>
            {
                Err(SignalFailure::TakenByAnotherPublisher)
            }
            Inserted::Duplicate(row) => match row.answer_json {
                // Accepted before: the first answer again, nothing published.
                Some(answer) => Ok(SignalReply::Answered(answer)),
                // Stored but never published (a crash or a timed-out insert): publish it now.
                None => {
                    let stored =
                        Signal::parse(row.record_json.as_bytes(), ladder, &state.config.signals)?;
                    Ok(SignalReply::Published(
                        self.publish_and_mark(&stored, &row.record_json).await?,
                    ))
                }
            },
        }
    }

    /// Publishes every signal the store holds but never published (spec section 9, item
    /// 25); returns how many.
    pub async fn publish_pending(&self) -> Result<usize, StoreError> {
        let state = &self.state;
        let pending = state.store.unpublished().await?;
        let ladder = state.hub.ladder();
        let mut published = 0;
        for row in pending {
            match Signal::parse(row.record_json.as_bytes(), ladder, &state.config.signals) {
                Ok(signal) => match self.publish_and_mark(&signal, &row.record_json).await {
                    Ok(_) => published += 1,
                    Err(e) => {
                        tracing::warn!(signal_id = %row.signal_id, error = %e, "could not publish a stored signal")
                    }
                },
                Err(e) => {
                    tracing::error!(signal_id = %row.signal_id, error = %e, "stored signal no longer validates; not published")
                }
            }
        }
        Ok(published)
    }

    /// Routes a stored signal to its channels and returns the publisher's answer.
    async fn route(&self, signal: &Signal, record: &str) -> Result<Value, PublishFailure> {
        let ladder = self.state.hub.ladder();
        let channels = signal.channels(ladder, &self.state.config.signals);
        let data = RawValue::from_string(record.to_string())
            .map_err(|e| PublishFailure::Internal(format!("signal record is not JSON: {e}")))?;
        let receipt = self
            .send(Message {
                channels: &channels,
                kind: "signal",
                data: &data,
                tier: Some(signal.tier),
                id_prefix: "sig_",
            })
            .await?;
        let on_signals = &receipt.published[0];
        Ok(json!({
            "signal_id": signal.signal_id,
            "id": receipt.id,
            "tier": ladder.name(signal.tier),
            "channels": channels,
            "epoch": &*on_signals.epoch,
            "seq": on_signals.seq,
        }))
    }

    /// Publishes a stored signal and records the answer; a failure to record is logged (the
    /// signal was delivered; at worst it is published again at the next start).
    async fn publish_and_mark(
        &self,
        signal: &Signal,
        record: &str,
    ) -> Result<Value, PublishFailure> {
        let answer = self.route(signal, record).await?;
        if let Err(e) = self
            .state
            .store
            .mark_published(&signal.signal_id, &answer.to_string())
            .await
        {
            tracing::warn!(signal_id = %signal.signal_id, error = %e, "could not record a published signal");
        }
        Ok(answer)
    }
}
