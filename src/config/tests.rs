//! Parsing, defaults, secrets and validation of `config.toml`.

use super::*;

const MIN: &str = r#"
[server]
api_keys = [{ name = "crm", key = "0123456789abcdef" }]
[rocketchat]
url = "https://chat.example.com/"
admin_username = "admin"
admin_password = "pw"
[users]
password_secret = "s"
"#;

#[test]
fn defaults_and_derived_ws_url() {
    let c = Config::parse(MIN).unwrap();
    assert_eq!(c.rocketchat.url, "https://chat.example.com");
    assert_eq!(c.rocketchat.ws_url, "wss://chat.example.com/websocket");
    assert_eq!(c.rocketchat.login_method, LoginMethod::Ddp);
    assert_eq!(c.session.idle_ttl, Duration::from_secs(3600));
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(format!("{:?}", c.rocketchat.admin_password), "***");
    assert!(
        !format!("{c:?}").contains("0123456789abcdef"),
        "secrets never in Debug"
    );
}

#[test]
fn unknown_keys_are_named() {
    let e = Config::parse(&MIN.replace("[users]", "[users]\npasword = \"x\"")).unwrap_err();
    assert!(e.to_string().contains("pasword"), "{e}");
    let e = Config::parse(&MIN.replace("[server]", "[server]\nlisten = \"nope\"")).unwrap_err();
    assert!(
        e.to_string().contains("listen = \"nope\"") && e.to_string().contains("host:port"),
        "{e}"
    );
}

#[test]
fn secrets_from_env_file_and_credentials() {
    std::env::set_var("IMRELAY_TEST_SECRET_X", "from-env");
    let dir = std::env::temp_dir().join(format!("imrelay-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pw"), "from-file\n").unwrap();
    let text = MIN
        .replace(
            r#"admin_password = "pw""#,
            &format!(
                "admin_password = {{ file = \"{}\" }}",
                dir.join("pw").display()
            ),
        )
        .replace(
            r#"password_secret = "s""#,
            r#"password_secret = { env = "IMRELAY_TEST_SECRET_X" }"#,
        );
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.rocketchat.admin_password.expose(), "from-file");
    assert_eq!(c.users.password_secret.unwrap().expose(), "from-env");
    let e = Config::parse(&MIN.replace(
        r#"admin_password = "pw""#,
        r#"admin_password = { env = "IMRELAY_NOPE_NOT_SET" }"#,
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("admin_password") && e.to_string().contains("IMRELAY_NOPE_NOT_SET"),
        "{e}"
    );
    let e = Config::parse(&MIN.replace(
        r#"admin_password = "pw""#,
        r#"admin_password = { credential = "x" }"#,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("CREDENTIALS_DIRECTORY"), "{e}");
}

#[test]
fn the_shipped_config_toml_is_valid() {
    for (k, v) in [
        ("IMRELAY_API_KEY", "0123456789abcdef"),
        ("IMRELAY_RC_ADMIN_PASSWORD", "x"),
        ("IMRELAY_PASSWORD_SECRET", "y"),
    ] {
        std::env::set_var(k, v);
    }
    let c = Config::parse(include_str!("../../config.toml")).unwrap();
    assert_eq!(c.server.api_keys[0].name, "backend");
    assert_eq!(c.rocketchat.ws_url, "ws://127.0.0.1:3000/websocket");
}

#[test]
fn origins_default_to_same_origin_and_any_is_explicit() {
    let c = Config::parse(MIN).unwrap();
    let o = &c.server.allowed_origins;
    assert_eq!(*o, Origins::SameOrigin);
    assert!(o.allows("https://imrelay.example.com", Some("imrelay.example.com")));
    assert!(!o.allows("https://evil.example", Some("imrelay.example.com")));
    assert!(!o.allows("https://evil.example", None));
    let any =
        Config::parse(&MIN.replace("[server]", "[server]\nallowed_origins = [\"*\"]")).unwrap();
    assert!(any
        .server
        .allowed_origins
        .allows("https://evil.example", None));
    let list = Origins::List(vec!["https://app.example.com".into()]);
    assert!(list.allows("https://app.example.com", Some("other")));
    assert!(!list.allows("https://app.example.com.evil", Some("other")));
    for bad in [
        r#"["*", "https://a.b"]"#,
        r#"["app.example.com"]"#,
        r#"["https://a.b/"]"#,
    ] {
        let e =
            Config::parse(&MIN.replace("[server]", &format!("[server]\nallowed_origins = {bad}")))
                .unwrap_err();
        assert!(e.to_string().contains("allowed_origins"), "{bad}: {e}");
    }
}

#[test]
fn the_admin_and_rocket_cat_are_reserved() {
    let c = Config::parse(&MIN.replace("[users]", "[users]\nreserved = [\"GPT.Bot\"]")).unwrap();
    assert_eq!(c.users.reserved, ["admin", "rocket.cat", "gpt.bot"]);
}

#[test]
fn validation_names_the_key() {
    let e =
        Config::parse(&MIN.replace(r#"key = "0123456789abcdef""#, r#"key = "short""#)).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Invalid { key, .. } if key == "server.api_keys[0].key"),
        "{e}"
    );
    let e = Config::parse(&MIN.replace("password_secret = \"s\"", "")).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Invalid { key, .. } if key == "users.password_secret"),
        "{e}"
    );
    let e = Config::parse(&format!("{MIN}\n[session]\nidle_ttl = \"forever\"")).unwrap_err();
    assert!(e.to_string().contains("idle_ttl"), "{e}");
}
