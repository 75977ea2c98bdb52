//! Operations: configuration layering, readiness, metrics.

use eoc_server::config::Config;
use eoc_tests::{Server, data_dir, http, message, test_config, workspace_path};
use serde_json::json;

#[test]
fn the_shipped_config_file_states_the_defaults() {
    let config = Config::load(Some(&workspace_path("config/eoc.toml")), Vec::new()).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn environment_variables_override_the_file() {
    let env = [
        ("EOC_HTTP__LISTEN", "0.0.0.0:9000"),
        ("EOC_MQTT__ENABLED", "false"),
        ("EOC_DATA_DIR", "/var/lib/eoc"),
        ("EOC_ENGINE__ACK_TIMEOUT_S", "30"),
        ("EOC_LOG_JSON", "1"),
        ("OTHER", "x"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = Config::load(Some(&workspace_path("config/eoc.toml")), env).unwrap();
    assert_eq!(config.http.listen, "0.0.0.0:9000");
    assert!(!config.mqtt.enabled);
    assert_eq!(config.data_dir, std::path::PathBuf::from("/var/lib/eoc"));
    assert_eq!(config.engine.ack_timeout_s, 30);

    let bad = [("EOC_HTTP__LISTEN_PORT".to_owned(), "1".to_owned())];
    let err = Config::load(Some(&workspace_path("config/eoc.toml")), bad).unwrap_err();
    assert!(format!("{err:#}").contains("listen_port"), "{err:#}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let (status, health) = server.get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["mqtt"]["state"], "disabled");
    assert_eq!(ready["scenario"]["teams"], 3);

    server.post("/api/v1/teams/t-1/position", &message(json!({"lat": 38.5, "lon": 68.7}))).await;
    server.post("/api/v1/teams/t-9/position", &message(json!({"lat": 38.5, "lon": 68.7}))).await;
    let (status, text) = http(server.addr, "GET", "/metrics", None, &[]).await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap();
    assert!(text.contains("eoc_messages_total{edge=\"http\",outcome=\"applied\"} 1"), "{text}");
    assert!(text.contains("eoc_messages_total{edge=\"http\",outcome=\"rejected\"} 1"));
    assert!(text.contains("eoc_journal_commit_seconds_count 2"));

    // Health, readiness and metrics are open; the API is not.
    let (status, err) = http(server.addr, "GET", "/api/v1/teams", None, &[]).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("unauthenticated")), "{err}");
    server.stop().await;
}
