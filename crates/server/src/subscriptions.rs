//! What every transport does with its subscriptions when its identity changes: re-check each
//! held channel against the channel rules, keep (in the new tier's bucket) or end it.
//!
//! WebSocket connections (`ws/session.rs`) and SSE streams and waiting long-polls
//! (`http/stream.rs`) call the same function, so a tier change means the same on each.

use std::sync::Arc;

use signalhub_hub::{Client, Identity, TierId};

use crate::state::AppState;

/// One held subscription: the channel and the tier bucket it is in.
pub type Held = (Arc<str>, TierId);

/// Re-checks `held` for `identity`: a channel it may still read moves into the bucket of
/// its tier (so above-tier publications arrive as `locked` stubs); one it may not is
/// unsubscribed. Returns what is kept and the channels ended, in the order held.
pub fn restrict(
    state: &AppState,
    client: &Arc<Client>,
    identity: &Identity,
    held: Vec<Held>,
) -> (Vec<Held>, Vec<Arc<str>>) {
    let ladder = state.hub.ladder();
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(held.len());
    for (channel, tier) in held {
        let allowed = state
            .config
            .rules
            .check(ladder, &channel, identity.tier, identity.user.as_deref())
            .is_ok();
        if allowed {
            state.hub.rebucket(client, &channel, tier, identity.tier);
            kept.push((channel, identity.tier));
        } else {
            state.hub.unsubscribe(client.id(), &channel, tier);
            removed.push(channel);
        }
    }
    (kept, removed)
}
