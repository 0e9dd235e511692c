//! Tests of configuration precedence and validation.

use super::*;

fn resolve(
    file: &str,
    env: &[(&str, &str)],
    listen_flag: Option<&str>,
) -> Result<Config, ConfigError> {
    let overrides = Overrides {
        listen: listen_flag.map(String::from),
        config: None,
        api_key: None,
    };
    Config::resolve(parse_file(file)?, &overrides, env)
}

#[test]
fn defaults_listen_on_loopback_8080_with_a_generated_publisher_key() {
    let c = resolve("", &[], None).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert!(c.generated_key);
    assert_eq!(c.api_keys.len(), 1);
    assert_eq!(c.api_keys[0].role, Role::Publisher);
    assert_eq!(c.store, StoreUrl::Sqlite("signalhub.db".into()));
    assert_eq!(c.limits, Limits::default());
}

#[test]
fn flag_beats_environment_beats_file() {
    let file = r#"listen = "127.0.0.1:1""#;
    let env = [("SIGNALHUB_LISTEN", "127.0.0.1:2")];
    assert_eq!(resolve(file, &[], None).unwrap().listen.port(), 1);
    assert_eq!(resolve(file, &env, None).unwrap().listen.port(), 2);
    assert_eq!(
        resolve(file, &env, Some("127.0.0.1:3"))
            .unwrap()
            .listen
            .port(),
        3
    );
}

#[test]
fn api_keys_env_splits_on_commas_and_the_last_colon() {
    let env = [(
        "SIGNALHUB_API_KEYS",
        " pub:key:1:publisher , adminkey1:admin ",
    )];
    let c = resolve("", &env, None).unwrap();
    assert!(!c.generated_key);
    assert_eq!(c.api_keys[0].key, "pub:key:1");
    assert_eq!(c.api_keys[0].role, Role::Publisher);
    assert_eq!(c.api_keys[1].role, Role::Admin);
}

#[test]
fn the_api_key_flag_is_the_one_publisher_key_over_the_environment() {
    let overrides = Overrides {
        api_key: Some("flag-key-123".into()),
        ..Overrides::default()
    };
    let env = [("SIGNALHUB_API_KEYS", "envkey123:admin")];
    let c = Config::resolve(ConfigFile::default(), &overrides, &env[..]).unwrap();
    assert!(!c.generated_key);
    assert_eq!(
        c.api_keys,
        vec![ApiKey {
            key: "flag-key-123".into(),
            role: Role::Publisher
        }]
    );
    let short = Overrides {
        api_key: Some("short".into()),
        ..Overrides::default()
    };
    let none: [(&str, &str); 0] = [];
    let err = Config::resolve(ConfigFile::default(), &short, &none[..]).unwrap_err();
    assert_eq!(err.field, "--api-key");
}

#[test]
fn an_empty_api_keys_variable_means_unset() {
    let c = resolve("", &[("SIGNALHUB_API_KEYS", "  ")], None).unwrap();
    assert!(c.generated_key);
}

#[test]
fn invalid_values_name_the_field() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 9] = [
        ("", &[("SIGNALHUB_LISTEN", "nope")], "SIGNALHUB_LISTEN"),
        ("", &[("SIGNALHUB_IO_URING", "maybe")], "SIGNALHUB_IO_URING"),
        (
            "",
            &[("SIGNALHUB_API_KEYS", "k12345678:root")],
            "SIGNALHUB_API_KEYS",
        ),
        ("", &[("SIGNALHUB_STORE", "mysql://x")], "SIGNALHUB_STORE"),
        ("", &[("SIGNALHUB_BROKER", "kafka://x")], "SIGNALHUB_BROKER"),
        (
            "",
            &[("SIGNALHUB_MAX_SUBSCRIPTIONS", "-1")],
            "SIGNALHUB_MAX_SUBSCRIPTIONS",
        ),
        (
            "[limits]\nmax_subscriptions = 0",
            &[],
            "limits.max_subscriptions",
        ),
        (
            "[signals]\nhigh_confidence = 1.5",
            &[],
            "signals.high_confidence",
        ),
        (
            "[[channels]]\npattern = \"vip\"\nmin_tier = \"gold\"",
            &[],
            "channels[0].min_tier",
        ),
    ];
    for (file, env, field) in cases {
        let err = resolve(file, env, None).unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn io_uring_is_off_by_default_and_can_be_turned_on_or_off_by_file_or_environment() {
    // Off by default: on a busy machine the direct-write path built a 4-8x worse tail than
    // the plain path (issue #11; docs/benchmarks.md).
    assert!(!resolve("", &[], None).unwrap().io_uring);
    assert!(resolve("io_uring = true", &[], None).unwrap().io_uring);
    assert!(!resolve("io_uring = false", &[], None).unwrap().io_uring);
    let env = [("SIGNALHUB_IO_URING", "off")];
    assert!(!resolve("io_uring = true", &env, None).unwrap().io_uring);
    let env = [("SIGNALHUB_IO_URING", "on")];
    assert!(resolve("", &env, None).unwrap().io_uring);
}

#[test]
fn unknown_keys_in_the_file_are_refused_naming_the_key() {
    let err = parse_file("lissen = \"127.0.0.1:1\"").unwrap_err();
    assert!(err.to_string().contains("lissen"), "{err}");
}

#[test]
fn channel_rules_come_from_the_file_or_the_environment() {
    let file = "[[channels]]\npattern = \"vip:*\"\nmin_tier = \"whale\"\n";
    let c = resolve(file, &[], None).unwrap();
    let ladder = &c.hub.ladder;
    assert!(c
        .rules
        .check(ladder, "vip:room", ladder.parse("premium").unwrap(), None)
        .is_err());
    assert!(c
        .rules
        .check(ladder, "premium", signalhub_hub::TierId::LOWEST, None)
        .is_ok());

    let env = [("SIGNALHUB_CHANNEL_RULES", "desk:{user}=owner,pro=premium")];
    let c = resolve("", &env, None).unwrap();
    assert!(c
        .rules
        .check(
            &c.hub.ladder,
            "desk:alice",
            signalhub_hub::TierId::LOWEST,
            Some("bob")
        )
        .is_err());
    assert!(c
        .rules
        .check(&c.hub.ladder, "pro", signalhub_hub::TierId::LOWEST, None)
        .is_err());
}

#[test]
fn a_full_file_parses() {
    let file = r#"
listen = "127.0.0.1:9000"
log = "debug"
store = "sqlite::memory:"
jwt_secret = "0123456789abcdef0123"
allowed_origins = ["https://app.example"]
dedup_window_s = 60
api_keys = [{ key = "publisher-key-1", role = "publisher" }, { key = "admin-key-1", role = "admin" }]

[limits]
max_subscriptions = 10
idle_timeout_s = 60

[tiers]
ladder = ["basic", "pro"]
aliases = { starter = "basic" }

[signals]
premium_min_confidence = 0.7
whale_min_confidence = 0.95

[[channels]]
pattern = "pro"
min_tier = "pro"

[history]
size = 10
ttl_s = 30
latest_value = ["price:*"]
rules = [{ pattern = "price:*", size = 1 }]
"#;
    let c = resolve(file, &[], None).unwrap();
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(c.limits.max_subscriptions, 10);
    assert_eq!(c.hub.ladder.len(), 2);
    assert_eq!(c.allowed_origins, ["https://app.example"]);
    assert_eq!(c.hub.history.size, 10);
    assert_eq!(c.hub.history_rules[0].1.size, 1);
    assert_eq!(c.dedup_window_s, 60);
}

#[test]
fn api_key_debug_output_hides_the_secret() {
    let key = ApiKey {
        key: "super-secret-value".into(),
        role: Role::Admin,
    };
    assert!(!format!("{key:?}").contains("super-secret-value"));
}

#[test]
fn wallet_sign_in_on_a_non_loopback_address_without_a_wallet_domain_is_refused() {
    let e = resolve("", &[], Some("0.0.0.0:8080")).unwrap_err();
    assert_eq!(e.field, "auth.wallet_domain");
    assert!(
        e.message.contains("SIGNALHUB_WALLET_DOMAIN"),
        "{}",
        e.message
    );
    let e = resolve("", &[("SIGNALHUB_LISTEN", "[::]:8080")], None).unwrap_err();
    assert_eq!(e.field, "auth.wallet_domain");
}

#[test]
fn a_wallet_domain_or_turning_wallet_sign_in_off_allows_a_public_listen_address() {
    let c = resolve(
        "[auth]\nwallet_domain = \"app.example.com\"\n",
        &[],
        Some("0.0.0.0:8080"),
    )
    .unwrap();
    assert_eq!(c.auth.wallet_domain.as_deref(), Some("app.example.com"));
    assert!(c.auth.wallet_signin);
    let c = resolve(
        "",
        &[("SIGNALHUB_WALLET_DOMAIN", "signals.example.com")],
        Some("0.0.0.0:8080"),
    )
    .unwrap();
    assert_eq!(c.auth.wallet_domain.as_deref(), Some("signals.example.com"));
    let c = resolve("[auth]\nwallet_signin = false\n", &[], Some("0.0.0.0:8080")).unwrap();
    assert!(!c.auth.wallet_signin);
    let c = resolve(
        "",
        &[("SIGNALHUB_WALLET_SIGNIN", "false")],
        Some("0.0.0.0:8080"),
    )
    .unwrap();
    assert!(!c.auth.wallet_signin);
}

#[test]
fn loopback_listen_addresses_may_check_sign_in_against_the_host_header() {
    for listen in ["127.0.0.1:8080", "127.5.6.7:1", "[::1]:8080"] {
        let c = resolve("", &[], Some(listen)).unwrap();
        assert!(c.auth.wallet_signin);
        assert_eq!(c.auth.wallet_domain, None);
    }
}

#[test]
fn a_blank_wallet_domain_is_refused() {
    let e = resolve("[auth]\nwallet_domain = \" \"\n", &[], None).unwrap_err();
    assert_eq!(e.field, "auth.wallet_domain");
    let e = resolve("", &[("SIGNALHUB_WALLET_SIGNIN", "maybe")], None).unwrap_err();
    assert_eq!(e.field, "SIGNALHUB_WALLET_SIGNIN");
}

#[test]
fn publish_and_ws_connect_rates_default_generous_come_from_file_or_environment_and_refuse_zero() {
    let c = resolve("", &[], None).unwrap();
    assert_eq!(
        (
            c.limits.publishes_per_key_per_second,
            c.limits.publishes_per_key_burst,
            c.limits.ws_connects_per_ip_per_second,
            c.limits.ws_connects_per_ip_burst,
        ),
        (1000, 2000, 50, 200)
    );
    let file = "[limits]\npublishes_per_key_per_second = 5\npublishes_per_key_burst = 6\n\
                ws_connects_per_ip_per_second = 7\nws_connects_per_ip_burst = 8";
    let c = resolve(file, &[], None).unwrap();
    assert_eq!(c.limits.publishes_per_key_per_second, 5);
    assert_eq!(c.limits.publishes_per_key_burst, 6);
    assert_eq!(c.limits.ws_connects_per_ip_per_second, 7);
    assert_eq!(c.limits.ws_connects_per_ip_burst, 8);
    let env = [
        ("SIGNALHUB_PUBLISHES_PER_KEY_PER_SECOND", "15"),
        ("SIGNALHUB_PUBLISHES_PER_KEY_BURST", "16"),
        ("SIGNALHUB_WS_CONNECTS_PER_IP_PER_SECOND", "17"),
        ("SIGNALHUB_WS_CONNECTS_PER_IP_BURST", "18"),
    ];
    let c = resolve(file, &env, None).unwrap();
    assert_eq!(c.limits.publishes_per_key_per_second, 15);
    assert_eq!(c.limits.publishes_per_key_burst, 16);
    assert_eq!(c.limits.ws_connects_per_ip_per_second, 17);
    assert_eq!(c.limits.ws_connects_per_ip_burst, 18);
    for field in [
        "publishes_per_key_per_second",
        "publishes_per_key_burst",
        "ws_connects_per_ip_per_second",
        "ws_connects_per_ip_burst",
    ] {
        let err = resolve(&format!("[limits]\n{field} = 0"), &[], None).unwrap_err();
        assert_eq!(err.field, format!("limits.{field}"), "{err}");
    }
}
