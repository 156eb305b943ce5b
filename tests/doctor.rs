//! `imrelay doctor` against rcsim with a real server's defaults, then fixed.

use imrelay::config::{Config, LoginMethod, Secret};
use imrelay::rocketchat::doctor::{check, Level};
use rcsim::{Rcsim, Settings, SimConfig};

fn level(f: &[imrelay::rocketchat::doctor::Finding], key: &str) -> Level {
    f.iter()
        .find(|f| f.key == key)
        .unwrap_or_else(|| panic!("no {key} in {f:?}"))
        .level
}

#[actix_rt::test]
async fn doctor_reports_the_hostile_defaults_and_their_fixes() {
    let sim = Rcsim::start(SimConfig::default()).unwrap();
    let mut cfg = Config::for_rocketchat(&sim.url(), ("super", "123qwe"), "0123456789abcdef");
    cfg.rocketchat.login_method = LoginMethod::CreateToken;
    let f = check(&cfg).await;
    assert_eq!(level(&f, "reachable"), Level::Ok);
    assert!(f[0].text.contains("7.10.0"));
    assert_eq!(level(&f, "admin_login"), Level::Ok);
    assert_eq!(level(&f, "rest_rate_limiter"), Level::Warn);
    assert!(f
        .iter()
        .any(|f| f.key == "rest_rate_limiter" && f.text.contains("api-bypass-rate-limit")));
    assert_eq!(level(&f, "email_2fa_auto_opt_in"), Level::Warn);
    assert_eq!(
        level(&f, "backfill_rate"),
        Level::Ok,
        "paced to the limiter"
    );
    assert_eq!(
        level(&f, "create_token"),
        Level::Fail,
        "create_token configured but the server has no secret"
    );
    assert_eq!(sim.token_count("super"), 0, "doctor logs out after itself");
    assert_eq!(level(&f, "backfill_methods"), Level::Ok);

    // A server without an orphan method: the REST route and its limit.
    sim.update_settings(|s| s.removed_methods = vec!["messages/get".into()]);
    let f = check(&cfg).await;
    let m = f.iter().find(|f| f.key == "backfill_methods").unwrap();
    assert_eq!(m.level, Level::Warn);
    assert!(
        m.text.contains("messages/get") && m.text.contains("api-bypass-rate-limit"),
        "{m:?}"
    );
    sim.update_settings(|s| s.removed_methods.clear());

    sim.grant("api-bypass-rate-limit", "user");
    sim.update_settings(|s| {
        s.email_2fa_auto_opt_in = false;
        s.create_tokens_secret = Some("s3".into());
    });
    cfg.rocketchat.create_token_secret = Some(Secret::new("s3"));
    let f = check(&cfg).await;
    assert_eq!(
        level(&f, "backfill_rate"),
        Level::Warn,
        "paced for nothing now"
    );
    cfg.session.backfill_rate = 0;
    let f = check(&cfg).await;
    assert!(f.iter().all(|f| f.level == Level::Ok), "{f:#?}");
}

#[actix_rt::test]
async fn doctor_fails_clearly_when_unreachable_or_misconfigured() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = Config::for_rocketchat(
        &format!("http://{port}"),
        ("super", "123qwe"),
        "0123456789abcdef",
    );
    let f = check(&cfg).await;
    assert_eq!(f.len(), 1);
    assert_eq!(level(&f, "reachable"), Level::Fail);
    assert!(f[0].text.contains("rocketchat.url"));
    let sim = Rcsim::start(SimConfig {
        settings: Settings::default(),
        ..Default::default()
    })
    .unwrap();
    let cfg = Config::for_rocketchat(&sim.url(), ("super", "wrong"), "0123456789abcdef");
    let f = check(&cfg).await;
    assert_eq!(level(&f, "admin_login"), Level::Fail);
    assert!(f[1].text.contains("rocketchat.admin_password"), "{}", f[1]);
}
