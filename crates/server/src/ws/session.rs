//! What a connection does with each client frame: subscribe, unsubscribe, auth, ping, stats.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use signalhub_hub::rules::Denied;
use signalhub_hub::{channel, Identity, Since, SubscribeItem, TierId};

use super::connection::Connection;
use super::protocol::{self, Command};

/// Handles one text frame.
///
/// Every frame's work is linear in its size: the parser refuses a (un)subscribe naming more
/// than `limits.max_channels_per_frame` channels, duplicates are found through a hash set,
/// and held channels through a binary search of the connection's sorted `subs`.
pub(super) fn handle_text(conn: &mut Connection, text: &str) {
    let max_channels = conn.state.config.limits.max_channels_per_frame;
    match protocol::parse(text, max_channels) {
        Ok(Command::Subscribe {
            id,
            channels,
            since,
        }) => {
            if conn.admit_channel_ops(id, channels.len()) {
                subscribe(conn, id, &channels, &since)
            }
        }
        Ok(Command::Unsubscribe { id, channels }) => {
            if conn.admit_channel_ops(id, channels.len()) {
                unsubscribe(conn, id, &channels)
            }
        }
        Ok(Command::Auth { id, token }) => match conn.state.clone().verify_token(&token) {
            Ok(identity) => apply_identity(conn, identity, "auth_changed", id),
            // A failed auth frame changes nothing (spec section 9, item 11).
            Err(e) => conn.reply(protocol::error_frame(id, "unauthorized", None, e.message())),
        },
        Ok(Command::Ping { id }) => conn.reply(protocol::pong_frame(id)),
        Ok(Command::Stats { id }) => {
            let state = &conn.state;
            conn.reply(protocol::stats_frame(
                id,
                state.registry.len(),
                state.hub.stats().channels,
                state.clock.uptime_s(),
            ))
        }
        Err(e) => conn.reply(protocol::error_frame(e.id, e.code, None, &e.message)),
    }
}

/// Where `name` is in `subs` (sorted by name, each name once).
fn find_held(subs: &[(Arc<str>, TierId)], name: &str) -> Result<usize, usize> {
    subs.binary_search_by(|(c, _)| (**c).cmp(name))
}

/// The canonical name of `raw`, or None after answering `bad_channel`.
fn valid_name<'a>(conn: &Connection, id: Option<i64>, raw: &'a str) -> Option<&'a str> {
    let name = channel::normalize(raw);
    if name.is_none() {
        conn.reply(protocol::error_frame(
            id,
            "bad_channel",
            Some(raw),
            "channel names match ^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$",
        ));
    }
    name
}

/// Subscribes to `channels`: one `error` per refused channel, then one `subscribed` for the
/// allowed ones, then their replays (spec section 9, item 3).
pub(super) fn subscribe(
    conn: &mut Connection,
    id: Option<i64>,
    channels: &[String],
    since: &HashMap<String, Since>,
) {
    let identity = conn.client.identity();
    let state = conn.state.clone();
    let ladder = state.hub.ladder();
    let max = state.config.limits.max_subscriptions;
    let mut held_after = conn.held().len();
    let mut seen: HashSet<&str> = HashSet::with_capacity(channels.len());
    // `since` keyed by an alias (`signals:all`) finds the channel's canonical name too;
    // `since` holds at most `max_channels_per_frame` entries, so this stays linear.
    let since_by_name: HashMap<&str, &Since> = since
        .iter()
        .filter_map(|(key, at)| channel::normalize(key).map(|n| (n, at)))
        .collect();
    let mut accepted: Vec<(&str, Option<&Since>, bool)> = Vec::with_capacity(channels.len());
    for raw in channels {
        let Some(name) = valid_name(conn, id, raw) else {
            continue;
        };
        if !seen.insert(name) {
            continue;
        }
        let user = identity.user.as_deref();
        match state.config.rules.check(ladder, name, identity.tier, user) {
            Ok(()) => {}
            Err(Denied::Unauthorized) => {
                conn.reply(protocol::error_frame(
                    id,
                    "unauthorized",
                    Some(name),
                    "this channel needs an authenticated user",
                ));
                continue;
            }
            Err(Denied::Forbidden(message)) => {
                conn.reply(protocol::error_frame(id, "forbidden", Some(name), &message));
                continue;
            }
        }
        let held = find_held(conn.held(), name).is_ok();
        if !held {
            if held_after >= max {
                conn.reply(protocol::error_frame(
                    id,
                    "too_many_subscriptions",
                    Some(name),
                    &format!("at most {max} subscriptions per connection"),
                ));
                continue;
            }
            held_after += 1;
        }
        let since = since
            .get(raw.as_str())
            .or_else(|| since.get(name))
            .or_else(|| since_by_name.get(name).copied());
        accepted.push((name, since, held));
    }
    if accepted.is_empty() {
        return;
    }
    let items: Vec<SubscribeItem<'_>> = accepted
        .iter()
        .map(|(channel, since, held)| SubscribeItem {
            channel,
            since: *since,
            held: *held,
        })
        .collect();
    let positions = state
        .hub
        .subscribe(&conn.client, identity.tier, &items, |positions| {
            protocol::subscribed_frame(id, positions)
        });
    if items.iter().all(|item| item.held) {
        return;
    }
    let mut subs = conn.take_held();
    for (position, item) in positions.into_iter().zip(&items) {
        if !item.held {
            subs.push((position.channel, identity.tier));
        }
    }
    // Kept sorted by name (each name once: a held channel is never pushed again).
    subs.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    conn.set_held(subs);
}

fn unsubscribe(conn: &mut Connection, id: Option<i64>, channels: &[String]) {
    let mut seen: HashSet<&str> = HashSet::with_capacity(channels.len());
    let mut done: Vec<&str> = Vec::with_capacity(channels.len());
    let mut held: Vec<usize> = Vec::new();
    for raw in channels {
        let Some(name) = valid_name(conn, id, raw) else {
            continue;
        };
        if !seen.insert(name) {
            continue;
        }
        done.push(name);
        if let Ok(at) = find_held(conn.held(), name) {
            held.push(at);
        }
    }
    if !held.is_empty() {
        held.sort_unstable();
        let mut kept = Vec::with_capacity(conn.held().len() - held.len());
        let mut gone = held.into_iter().peekable();
        for (at, (channel, tier)) in conn.take_held().into_iter().enumerate() {
            if gone.next_if_eq(&at).is_some() {
                conn.state.hub.unsubscribe(conn.client.id(), &channel, tier);
            } else {
                kept.push((channel, tier));
            }
        }
        conn.set_held(kept);
    }
    conn.reply(protocol::unsubscribed_frame(id, &done, None));
}

/// Replaces the connection's identity (an `auth` frame), takes away what it may no longer
/// hold, and confirms with `authenticated`.
fn apply_identity(conn: &mut Connection, identity: Identity, reason: &str, id: Option<i64>) {
    conn.client.set_identity(identity.clone());
    restrict(conn, &identity, reason);
    let ladder = conn.state.hub.ladder();
    conn.reply(protocol::authenticated_frame(
        id,
        identity.auth.as_str(),
        ladder.name(identity.tier),
        identity.user.as_deref(),
    ));
}

/// After an identity change from outside (an admin tier change): re-check subscriptions and
/// tell the client its new tier.
pub(super) fn refresh(conn: &mut Connection) {
    let identity = conn.client.identity();
    restrict(conn, &identity, "tier_changed");
    let ladder = conn.state.hub.ladder();
    conn.reply(protocol::authenticated_frame(
        None,
        identity.auth.as_str(),
        ladder.name(identity.tier),
        identity.user.as_deref(),
    ));
}

/// Ends subscriptions `identity` may not hold (an id-less `unsubscribed` with `reason`) and
/// moves the rest into the bucket of its tier.
fn restrict(conn: &mut Connection, identity: &Identity, reason: &str) {
    let state = conn.state.clone();
    let held = conn.take_held();
    let (kept, removed) = crate::subscriptions::restrict(&state, &conn.client, identity, held);
    conn.set_held(kept);
    if !removed.is_empty() {
        let names: Vec<&str> = removed.iter().map(|c| &**c).collect();
        conn.reply(protocol::unsubscribed_frame(None, &names, Some(reason)));
    }
}
