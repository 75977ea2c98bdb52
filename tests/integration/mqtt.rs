//! The MQTT edge against a real mosquitto started from `config/mosquitto`.

use eoc_tests::mosquitto::{Client, Mosquitto, OPERATOR_USER, SERVER_USER};

/// The deployed ACL pins a responder to its own team's topics: team-b's
/// position published by team-a's user never reaches a subscriber, while
/// team-a's own does.
#[tokio::test]
async fn acl_pins_a_responder_to_its_own_topics() {
    let broker = Mosquitto::start(&["team-a"]).unwrap();
    let mut watcher = Client::connect(&broker, SERVER_USER, "watcher", false).await;
    watcher.subscribe("eoc/v1/teams/+/position").await;
    let phone = Client::connect(&broker, "team-a", "phone-a", false).await;
    phone.publish("eoc/v1/teams/team-b/position", "forged").await;
    phone.publish("eoc/v1/teams/team-a/position", "own").await;
    let m = watcher.next_where("a position", |_| true).await;
    assert_eq!((m.topic.as_str(), m.payload.as_str()), ("eoc/v1/teams/team-a/position", "own"));
}

/// A QoS 1 message queued for an offline persistent session survives a
/// broker restart (SIGTERM saves the database, the restart loads it).
#[tokio::test]
async fn broker_keeps_queued_messages_across_a_restart() {
    let mut broker = Mosquitto::start(&[]).unwrap();
    {
        let mut server = Client::connect(&broker, SERVER_USER, "eoc-server-test", true).await;
        server.subscribe("eoc/v1/alerts").await;
    }
    let console = Client::connect(&broker, OPERATOR_USER, "console", false).await;
    console.publish("eoc/v1/alerts", "queued").await;
    let mut console = console;
    console.next_puback().await;
    broker.restart().unwrap();
    let mut server = Client::connect(&broker, SERVER_USER, "eoc-server-test", true).await;
    let m = server.next_on("eoc/v1/alerts").await;
    assert_eq!(m.payload, "queued");
}
