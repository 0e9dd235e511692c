//! What a connection does with each client frame: subscribe, unsubscribe, auth, ping, stats.

use std::collections::HashMap;
use std::sync::Arc;

use signalhub_hub::rules::Denied;
use signalhub_hub::{channel, Identity, Since, SubscribeItem};

use super::connection::Connection;
use super::protocol::{self, Command};

/// Handles one text frame.
pub(super) fn handle_text(conn: &mut Connection, text: &str) {
    match protocol::parse(text) {
        Ok(Command::Subscribe {
            id,
            channels,
            since,
        }) => subscribe(conn, id, &channels, &since),
        Ok(Command::Unsubscribe { id, channels }) => unsubscribe(conn, id, &channels),
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
    let mut held_after = conn.subs.len();
    let mut accepted: Vec<(&str, Option<&Since>, bool)> = Vec::new();
    for raw in channels {
        let Some(name) = valid_name(conn, id, raw) else {
            continue;
        };
        if accepted.iter().any(|(n, _, _)| *n == name) {
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
        let held = conn.subs.iter().any(|(c, _)| &**c == name);
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
        let since = since.get(raw.as_str()).or_else(|| since.get(name));
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
    let mut subs = std::mem::take(&mut conn.subs).into_vec();
    for (position, item) in positions.into_iter().zip(&items) {
        if !item.held {
            subs.push((position.channel, identity.tier));
        }
    }
    conn.subs = subs.into_boxed_slice();
}

fn unsubscribe(conn: &mut Connection, id: Option<i64>, channels: &[String]) {
    let mut done: Vec<&str> = Vec::new();
    for raw in channels {
        let Some(name) = valid_name(conn, id, raw) else {
            continue;
        };
        if let Some(pos) = conn.subs.iter().position(|(c, _)| &**c == name) {
            let mut subs = std::mem::take(&mut conn.subs).into_vec();
            let (channel, tier): (Arc<str>, _) = subs.swap_remove(pos);
            conn.subs = subs.into_boxed_slice();
            conn.state.hub.unsubscribe(conn.client.id(), &channel, tier);
        }
        if !done.contains(&name) {
            done.push(name);
        }
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
    let ladder = state.hub.ladder();
    let mut removed: Vec<Arc<str>> = Vec::new();
    let mut kept = Vec::with_capacity(conn.subs.len());
    for (channel, tier) in std::mem::take(&mut conn.subs).into_vec() {
        let allowed = state
            .config
            .rules
            .check(ladder, &channel, identity.tier, identity.user.as_deref())
            .is_ok();
        if allowed {
            state
                .hub
                .rebucket(&conn.client, &channel, tier, identity.tier);
            kept.push((channel, identity.tier));
        } else {
            state.hub.unsubscribe(conn.client.id(), &channel, tier);
            removed.push(channel);
        }
    }
    conn.subs = kept.into_boxed_slice();
    if !removed.is_empty() {
        let names: Vec<&str> = removed.iter().map(|c| &**c).collect();
        conn.reply(protocol::unsubscribed_frame(None, &names, Some(reason)));
    }
}
