//! The one publish path: every source (the HTTP API, the shutdown notice, feeds and bots
//! to come) publishes through [`Publisher`], which gives a publication its id and
//! timestamp, applies idempotency, serializes the envelope once per channel and hands it
//! to the hub's broker.
//!
//! HTTP handlers only parse, authorize, call this and map [`PublishFailure`] to a status;
//! an in-process source (a feed connector, a bot runner) calls the same methods with no
//! HTTP in between. Durable signals (store, then publish, and the signals stored but not
//! published at the last stop) are in [`signals`].

pub mod signals;

use serde_json::value::RawValue;
use serde_json::{json, Value};
use signalhub_hub::{ids, Publication, PublishError, Published, TierId};

use crate::idempotency::Claim;
use crate::state::AppState;
use crate::ws::protocol::now_rfc3339;

/// Who publishes: scopes idempotency keys (two sources never share one) and shows in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A caller of the HTTP API, by the index of its API key.
    ApiKey(usize),
    /// The server itself (the shutdown notice).
    System,
    /// An in-process source: a feed connector or a bot, by its configured name.
    Internal(String),
}

impl Source {
    fn scope(&self) -> String {
        match self {
            Source::ApiKey(index) => index.to_string(),
            Source::System => "system".to_string(),
            Source::Internal(name) => format!("internal:{name}"),
        }
    }
}

/// One publication to one or more channels.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Valid, normalized channel names, without duplicates, in publishing order.
    pub channels: &'a [String],
    /// The envelope `type`.
    pub kind: &'a str,
    /// The `data` payload, valid JSON.
    pub data: &'a RawValue,
    /// The tier a subscriber needs to see `data`.
    pub tier: Option<TierId>,
    /// The publication id's prefix (`pub_`, `trd_`, `sys_`).
    pub id_prefix: &'static str,
}

/// A retried publish is recognised by its key: the same key with the same body within the
/// dedup window gets the first answer and publishes nothing.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    /// The key the publisher chose.
    pub key: &'a str,
    /// What it is a key for (an endpoint name): the same key on two endpoints is two keys.
    pub endpoint: &'a str,
    /// SHA-256 of the request (`crate::idempotency::body_hash`); another body under the
    /// same key is a conflict.
    pub body_hash: [u8; 32],
}

/// A publication that went out.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub id: String,
    /// One position per channel, in the order of [`Message::channels`].
    pub published: Vec<Published>,
}

impl Receipt {
    /// The answer for a publish to one channel: `{id, channel, epoch, seq}`.
    pub fn single(&self) -> Value {
        let p = &self.published[0];
        json!({"id": self.id, "channel": &*p.channel, "epoch": &*p.epoch, "seq": p.seq})
    }

    /// The answer for a publish to several channels: `{id, publications: [...]}`.
    pub fn many(&self) -> Value {
        let publications: Vec<Value> = self
            .published
            .iter()
            .map(|p| json!({"channel": &*p.channel, "epoch": &*p.epoch, "seq": p.seq}))
            .collect();
        json!({"id": self.id, "publications": publications})
    }
}

/// What a publish answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Published now; this is the answer (and, with a key, what a retry gets).
    Published(Value),
    /// A retry of a publish already answered: its first answer, nothing published.
    Replay { status: u16, body: String },
}

/// Why nothing was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishFailure {
    /// The idempotency key was used with another body, or its first request is in flight.
    #[error("{0}")]
    Conflict(&'static str),
    /// The envelope cannot fit a subscriber's outbound queue.
    #[error("the publication's envelope is {size} bytes; subscribers' queues hold {limit}")]
    TooLarge { size: usize, limit: usize },
    /// The broker did not take it.
    #[error("{0}")]
    Unavailable(String),
    /// The server failed in a way the publisher cannot fix.
    #[error("{0}")]
    Internal(String),
}

impl From<PublishError> for PublishFailure {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::TooLarge { size, limit } => PublishFailure::TooLarge { size, limit },
            PublishError::Broker(e) => PublishFailure::Unavailable(e.to_string()),
        }
    }
}

/// The publish path, for every source. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    state: AppState,
}

impl Publisher {
    pub fn new(state: AppState) -> Self {
        Publisher { state }
    }

    /// Publishes `message` on each of its channels in order, as one publication (one id,
    /// one timestamp), and answers with what `answer` makes of the receipt. With an
    /// idempotency key, a retry gets the first answer and publishes nothing.
    pub async fn publish(
        &self,
        source: &Source,
        message: Message<'_>,
        idempotency: Option<Idempotency<'_>>,
        answer: fn(&Receipt) -> Value,
    ) -> Result<Reply, PublishFailure> {
        self.once(source, idempotency, async {
            Ok(Reply::Published(answer(&self.send(message).await?)))
        })
        .await
    }

    /// Runs `run` at most once per idempotency key of `source` (without a key, always): a
    /// retry with the same body gets the first answer, the same key with another body or
    /// while the first request runs is [`PublishFailure::Conflict`], and a failed run
    /// leaves the key unused. Every publishing source goes through here.
    pub(crate) async fn once<E: From<PublishFailure>>(
        &self,
        source: &Source,
        idempotency: Option<Idempotency<'_>>,
        run: impl std::future::Future<Output = Result<Reply, E>>,
    ) -> Result<Reply, E> {
        let Some(idem) = idempotency else {
            return run.await;
        };
        let scope = format!("{}:{}:{}", source.scope(), idem.endpoint, idem.key);
        let dedup = &self.state.idempotency;
        match dedup.claim(&scope, idem.body_hash) {
            Claim::Fresh => match run.await {
                Ok(reply) => {
                    let (status, body) = match &reply {
                        Reply::Published(answer) => (200, answer.to_string()),
                        Reply::Replay { status, body } => (*status, body.clone()),
                    };
                    dedup.complete(&scope, idem.body_hash, status, body);
                    Ok(reply)
                }
                Err(e) => {
                    dedup.abandon(&scope);
                    Err(e)
                }
            },
            Claim::Replay { status, body } => Ok(Reply::Replay { status, body }),
            Claim::Conflict(why) => Err(PublishFailure::Conflict(why).into()),
        }
    }

    /// Publishes `message` with a fresh id and timestamp: the step every source shares.
    pub async fn send(&self, message: Message<'_>) -> Result<Receipt, PublishFailure> {
        let id = ids::ulid(message.id_prefix);
        let timestamp = now_rfc3339();
        let publication = Publication {
            kind: message.kind,
            id: &id,
            timestamp: &timestamp,
            tier: message.tier,
            data: message.data,
        };
        if message.channels.len() > 1 {
            // All or nothing: the longest name makes the largest envelope.
            if let Some(longest) = message.channels.iter().max_by_key(|c| c.len()) {
                self.state.hub.check_fits(longest, &publication)?;
            }
        }
        let mut published = Vec::with_capacity(message.channels.len());
        for channel in message.channels {
            published.push(self.state.hub.publish(channel, &publication).await?);
        }
        Ok(Receipt { id, published })
    }

    /// Publishes `system_status {"status":"shutting_down"}` on `system` and pushes it to
    /// the subscribers now, before their connections are told to close.
    pub async fn announce_shutdown(&self) {
        let data =
            RawValue::from_string(r#"{"status":"shutting_down"}"#.to_string()).expect("valid JSON");
        let channels = ["system".to_string()];
        let sent = self
            .send(Message {
                channels: &channels,
                kind: "system_status",
                data: &data,
                tier: None,
                id_prefix: "sys_",
            })
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not publish the shutdown notice");
        }
        self.state.hub.flush();
    }
}
