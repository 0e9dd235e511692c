//! Hostile-input runs of the client-frame parser (`ws::protocol::parse`, issue 14 item 8), on
//! stable Rust with proptest: arbitrary bytes and strings, and structure-aware mutations of
//! valid frames (wrong types, huge arrays, deep nesting, long strings, unicode, numbers out of
//! range). Each run checks that the parser never panics and that every input gets either a
//! parsed frame within the channel limit or one of the spec's errors (`bad_request`,
//! `unknown_type`).
//!
//! `cargo test` runs a bounded number of cases (a few seconds). The long run:
//!
//! ```text
//! SIGNALHUB_FUZZ_CASES=100000 cargo test --release -p signalhub --test client_frame_fuzz
//! ```

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use signalhub::ws::protocol::{parse, Command, FrameError};

/// The channel limit the runs parse under (small, so "too many" is reached often).
const MAX_CHANNELS: usize = 8;

/// Cases per property: `SIGNALHUB_FUZZ_CASES`, else a count that runs in seconds.
fn cases() -> u32 {
    std::env::var("SIGNALHUB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The `id` a frame carries if it is an object with an integer (or absent/null) id.
fn frame_id(text: &str) -> Option<Option<i64>> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    match obj.get("id") {
        None | Some(Value::Null) => Some(None),
        Some(v) => v.as_i64().map(Some),
    }
}

/// Parses `text` and checks the outcome against the spec's rules for client frames.
fn check(text: &str) -> Result<(), TestCaseError> {
    let outcome = parse(text, MAX_CHANNELS);
    let id = frame_id(text);
    match outcome {
        Ok(command) => {
            let (got_id, channels) = match &command {
                Command::Subscribe {
                    id,
                    channels,
                    since,
                } => {
                    prop_assert!(!channels.is_empty(), "empty subscribe accepted: {text}");
                    prop_assert!(since.len() <= MAX_CHANNELS, "since over the limit: {text}");
                    (*id, channels.len())
                }
                Command::Unsubscribe { id, channels } => (*id, channels.len()),
                Command::Auth { id, .. } | Command::Ping { id } | Command::Stats { id } => (*id, 0),
            };
            prop_assert!(channels <= MAX_CHANNELS, "channels over the limit: {text}");
            prop_assert_eq!(Some(got_id), id, "id not the frame's own: {}", text);
        }
        Err(FrameError {
            id: err_id,
            code,
            message,
        }) => {
            prop_assert!(
                code == "bad_request" || code == "unknown_type",
                "code {code:?} is not one of the spec's: {text}"
            );
            prop_assert!(!message.is_empty(), "error without a message: {text}");
            // An error echoes the frame's id only when the frame had a usable one.
            if let Some(echo) = err_id {
                prop_assert_eq!(
                    id,
                    Some(Some(echo)),
                    "echoed an id the frame lacks: {}",
                    text
                );
            }
            // The echoed type is cut to 64 characters, each at most 10 once `{:?}`-escaped.
            if code == "unknown_type" {
                prop_assert!(
                    message.chars().count() < 64 * 10 + 32,
                    "unbounded echo: {}",
                    message
                );
            }
        }
    }
    Ok(())
}

/// Any JSON value, nested a few levels, with unicode strings and out-of-range numbers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid frame of each client type.
fn valid_frame() -> impl Strategy<Value = Value> {
    let id = proptest::option::of(any::<i64>());
    let channels = vec("[a-z0-9._-]{1,12}", 1..=MAX_CHANNELS);
    (id, channels, 0..5usize, ".{0,32}").prop_map(|(id, channels, kind, token)| {
        let mut v = match kind {
            0 => {
                let since: Map<String, Value> = channels
                    .iter()
                    .take(2)
                    .map(|c| (c.clone(), json!({"epoch": "e1", "seq": 3})))
                    .collect();
                json!({"type": "subscribe", "channels": channels, "since": since})
            }
            1 => json!({"type": "unsubscribe", "channels": channels}),
            2 => json!({"type": "auth", "token": token}),
            3 => json!({"type": "ping"}),
            _ => json!({"type": "stats"}),
        };
        if let Some(id) = id {
            v["id"] = id.into();
        }
        v
    })
}

/// One structure-aware change to a valid frame.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace (or add) a field with any JSON value.
    Set(&'static str, Value),
    /// Remove a field.
    Remove(&'static str),
    /// Name far more channels than the limit.
    HugeChannels(usize),
    /// A `since` with far more entries than the limit.
    HugeSince(usize),
    /// Wrap a field in `depth` arrays (past serde_json's recursion limit when deep).
    Nest(&'static str, usize),
    /// A very long string in a field.
    LongString(&'static str, usize, char),
    /// An id or seq as a number out of i64 / u64 range, or negative, or fractional.
    Number(&'static str, &'static str),
    /// Cut the serialized frame at a byte offset (modulo its length).
    Truncate(usize),
}

const FIELDS: [&str; 6] = ["type", "id", "channels", "since", "token", "extra"];

fn mutation() -> impl Strategy<Value = Mutation> {
    let field = proptest::sample::select(&FIELDS[..]);
    prop_oneof![
        (field.clone(), any_json()).prop_map(|(f, v)| Mutation::Set(f, v)),
        field.clone().prop_map(Mutation::Remove),
        (MAX_CHANNELS + 1..5_000usize).prop_map(Mutation::HugeChannels),
        (MAX_CHANNELS + 1..2_000usize).prop_map(Mutation::HugeSince),
        (field.clone(), 1..400usize).prop_map(|(f, d)| Mutation::Nest(f, d)),
        (field.clone(), 1_000..100_000usize, any::<char>())
            .prop_map(|(f, n, c)| Mutation::LongString(f, n, c)),
        (
            proptest::sample::select(&["id", "seq"][..]),
            proptest::sample::select(
                &[
                    "9223372036854775808",
                    "-9223372036854775809",
                    "18446744073709551616",
                    "-1",
                    "1.5",
                    "1e400",
                    "-0",
                    "1e2",
                ][..]
            )
        )
            .prop_map(|(f, n)| Mutation::Number(f, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn set_field(frame: &mut Value, field: &str, value: Value) {
    if let Some(obj) = frame.as_object_mut() {
        obj.insert(field.to_string(), value);
    }
}

/// Applies the mutations in turn and serializes the result.
fn mutate(mut frame: Value, mutations: &[Mutation]) -> String {
    let mut text = None;
    for m in mutations {
        let mut t = text.take().unwrap_or_else(|| frame.to_string());
        match m {
            Mutation::Set(f, v) => set_field(&mut frame, f, v.clone()),
            Mutation::Remove(f) => {
                frame.as_object_mut().map(|o| o.remove(*f));
            }
            Mutation::HugeChannels(n) => {
                let names: Vec<String> = (0..*n).map(|i| format!("c{i}")).collect();
                set_field(&mut frame, "channels", json!(names));
            }
            Mutation::HugeSince(n) => {
                let since: Map<String, Value> = (0..*n)
                    .map(|i| (format!("c{i}"), json!({"epoch": "e", "seq": i})))
                    .collect();
                set_field(&mut frame, "since", Value::Object(since));
            }
            Mutation::Nest(f, depth) => {
                // Built as text: serde_json's own serializer would be fine, but its parser
                // stops at 128 levels, which is the case worth reaching.
                let inner = frame.get(*f).cloned().unwrap_or(Value::Null).to_string();
                set_field(&mut frame, f, Value::Null);
                let nested = format!("{}{inner}{}", "[".repeat(*depth), "]".repeat(*depth));
                t = frame.to_string().replacen(
                    &format!("\"{f}\":null"),
                    &format!("\"{f}\":{nested}"),
                    1,
                );
                text = Some(t);
                continue;
            }
            Mutation::LongString(f, n, c) => {
                set_field(&mut frame, f, Value::String(c.to_string().repeat(*n)));
            }
            Mutation::Number(f, n) => {
                let target = if *f == "seq" {
                    "\"seq\":3"
                } else {
                    set_field(&mut frame, "id", json!(7));
                    "\"id\":7"
                };
                t = frame
                    .to_string()
                    .replacen(target, &format!("\"{f}\":{n}"), 1);
                text = Some(t);
                continue;
            }
            Mutation::Truncate(at) => {
                let bytes = t.as_bytes();
                let cut = at % (bytes.len() + 1);
                t = String::from_utf8_lossy(&bytes[..cut]).into_owned();
                text = Some(t);
                continue;
            }
        }
        // A structural change supersedes any earlier text-level one.
        let _ = t;
    }
    text.unwrap_or_else(|| frame.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_a_frame_or_a_spec_error(bytes in vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_strings_get_a_frame_or_a_spec_error(text in ".{0,256}") {
        check(&text)?;
    }

    #[test]
    fn arbitrary_json_gets_a_frame_or_a_spec_error(value in any_json()) {
        check(&value.to_string())?;
    }

    #[test]
    fn valid_frames_parse(frame in valid_frame()) {
        let text = frame.to_string();
        prop_assert!(parse(&text, MAX_CHANNELS).is_ok(), "valid frame refused: {}", text);
        check(&text)?;
    }

    #[test]
    fn mutated_valid_frames_get_a_frame_or_a_spec_error(
        frame in valid_frame(),
        mutations in vec(mutation(), 1..4),
    ) {
        check(&mutate(frame, &mutations))?;
    }
}

#[test]
fn nesting_past_the_json_recursion_limit_is_a_bad_request() {
    let deep = format!(
        r#"{{"type":"ping","extra":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let e = parse(&deep, MAX_CHANNELS).unwrap_err();
    assert_eq!(e.code, "bad_request");
}
