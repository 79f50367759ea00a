//! The Redis test harness itself (`tests/support/redis.rs`): real servers
//! start, answer, die, come back on the same port and leave nothing behind;
//! the RESP client reads every reply type; a 3-master cluster forms and
//! serves keys through their owning nodes.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::redis::{
    info_field, redis_available, redis_cmd, RedisCluster, RedisConn, RedisServer, RespValue,
};

fn bulk(text: &str) -> RespValue {
    RespValue::Bulk(text.as_bytes().to_vec())
}

fn ok() -> RespValue {
    RespValue::Simple("OK".to_owned())
}

/// Whether process `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
fn redis_server_is_installed() {
    assert!(
        redis_available(),
        "redis-server is not on PATH; scripts/test installs it"
    );
}

/// Set in the copy of this test binary that
/// `a_missing_redis_server_fails_the_test_instead_of_skipping_it` starts.
const NO_REDIS_CHILD: &str = "CACHETTE_HARNESS_NO_REDIS_CHILD";

#[test]
fn a_missing_redis_server_fails_the_test_instead_of_skipping_it() {
    if std::env::var_os(NO_REDIS_CHILD).is_some() {
        // The child, with an empty PATH.
        let _server = RedisServer::start();
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_missing_redis_server_fails_the_test_instead_of_skipping_it",
            "--exact",
            "--test-threads=1",
        ])
        .env(NO_REDIS_CHILD, "1")
        .env("PATH", "")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("`redis-server` is not on PATH"),
        "{printed}"
    );
}

#[test]
fn a_server_answers_ping_on_its_own_port_and_keeps_nothing_on_disk() {
    let server = RedisServer::start();
    assert!(server.is_running());
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    assert_eq!(
        server.cmd(&["PING"]).unwrap(),
        RespValue::Simple("PONG".to_owned())
    );
    // The process answering is ours, not another server on a reused port.
    let info = server.info("server").unwrap();
    assert_eq!(
        info_field(&info, "process_id"),
        Some(server.pid().unwrap().to_string())
    );
    assert_eq!(
        info_field(&info, "tcp_port"),
        Some(server.port().to_string())
    );
    assert_eq!(
        server.cmd(&["CONFIG", "GET", "save"]).unwrap(),
        RespValue::Array(vec![bulk("save"), bulk("")])
    );
    assert_eq!(
        server.cmd(&["CONFIG", "GET", "appendonly"]).unwrap(),
        RespValue::Array(vec![bulk("appendonly"), bulk("no")])
    );
    assert!(server.log().contains("Ready to accept connections"));
}

#[test]
fn redis_cmd_sets_gets_and_parses_every_reply_type() {
    let server = RedisServer::start();
    let port = server.port();
    let binary: &[u8] = b"\0\xff\r\n$3\r\n*-1\r\n";

    assert!(redis_cmd(port, &[b"SET".as_slice(), b"bin", binary])
        .unwrap()
        .is_ok());
    assert_eq!(
        redis_cmd(port, &["GET", "bin"]).unwrap().as_bytes(),
        Some(binary)
    );
    assert_eq!(redis_cmd(port, &["GET", "absent"]).unwrap(), RespValue::Nil);
    assert_eq!(
        redis_cmd(port, &["INCR", "n"]).unwrap(),
        RespValue::Integer(1)
    );
    assert_eq!(
        redis_cmd(port, &["MGET", "n", "absent", "bin"]).unwrap(),
        RespValue::Array(vec![
            bulk("1"),
            RespValue::Nil,
            RespValue::Bulk(binary.to_vec())
        ])
    );
    assert_eq!(
        redis_cmd(port, &["KEYS", "nothing:*"]).unwrap(),
        RespValue::Array(vec![])
    );
    assert_eq!(redis_cmd(port, &["SET", "empty", ""]).unwrap(), ok());
    assert_eq!(redis_cmd(port, &["GET", "empty"]).unwrap(), bulk(""));
    // A value of another type, as a test writes behind the cache's back.
    assert_eq!(
        redis_cmd(port, &["LPUSH", "list", "a", "b"]).unwrap(),
        RespValue::Integer(2)
    );
    let wrong_type = redis_cmd(port, &["GET", "list"]).unwrap();
    assert!(
        wrong_type
            .as_error()
            .is_some_and(|e| e.starts_with("WRONGTYPE")),
        "{wrong_type:?}"
    );
    assert_eq!(
        redis_cmd(port, &["DEL", "bin", "n", "absent"]).unwrap(),
        RespValue::Integer(2)
    );
    // Arguments as owned strings work too.
    let args = vec!["EXISTS".to_owned(), "bin".to_owned()];
    assert_eq!(redis_cmd(port, &args).unwrap(), RespValue::Integer(0));
}

#[test]
fn a_killed_server_restarts_empty_on_the_same_port() {
    let server = RedisServer::start();
    let port = server.port();
    let first_pid = server.pid().unwrap();
    assert!(server.cmd(&["SET", "k", "v"]).unwrap().is_ok());

    server.kill();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(redis_cmd(port, &["PING"]).is_err());
    assert!(!process_alive(first_pid));

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(first_pid));
    assert_eq!(server.cmd(&["GET", "k"]).unwrap(), RespValue::Nil);

    // Restarting a running server kills it first.
    let second_pid = server.pid().unwrap();
    server.restart();
    assert!(!process_alive(second_pid));
    assert_eq!(
        server.cmd(&["PING"]).unwrap(),
        RespValue::Simple("PONG".to_owned())
    );
}

#[test]
fn a_paused_server_answers_nothing_until_resumed() {
    let server = RedisServer::start();
    let mut conn = RedisConn::connect(server.port()).unwrap();
    conn.set_read_timeout(Duration::from_millis(300)).unwrap();

    server.pause();
    assert!(server.is_running());
    conn.send(&["PING"]).unwrap();
    let started = Instant::now();
    let error = conn.read_reply().unwrap_err();
    assert!(error.contains("timed out"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));

    server.resume();
    conn.set_read_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(
        conn.read_reply().unwrap(),
        RespValue::Simple("PONG".to_owned())
    );
}

#[test]
fn dropping_a_server_kills_it_and_deletes_its_dir() {
    let server = RedisServer::start();
    let (pid, port, dir) = (
        server.pid().unwrap(),
        server.port(),
        server.dir().to_owned(),
    );
    assert!(dir.join("redis.log").is_file());

    drop(server);
    assert!(!process_alive(pid));
    assert!(redis_cmd(port, &["PING"]).is_err());
    assert!(!dir.exists());
}

#[test]
fn a_server_with_a_password_refuses_commands_until_authenticated() {
    let server = RedisServer::start_with(&["--requirepass", "secret"]);
    let refused = server.cmd(&["GET", "k"]).unwrap();
    assert!(
        refused.as_error().is_some_and(|e| e.starts_with("NOAUTH")),
        "{refused:?}"
    );

    let mut conn = RedisConn::connect(server.port()).unwrap();
    let wrong = conn.cmd(&["AUTH", "wrong"]).unwrap();
    assert!(wrong.as_error().is_some(), "{wrong:?}");
    assert!(conn.cmd(&["AUTH", "secret"]).unwrap().is_ok());
    assert!(conn.cmd(&["SET", "k", "v"]).unwrap().is_ok());
    assert_eq!(conn.cmd(&["GET", "k"]).unwrap(), bulk("v"));
}

#[test]
fn servers_started_in_parallel_each_get_a_port_of_their_own() {
    let servers: Vec<RedisServer> = (0..4)
        .map(|_| thread::spawn(RedisServer::start))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    let ports: HashSet<u16> = servers.iter().map(RedisServer::port).collect();
    assert_eq!(ports.len(), servers.len());
    for server in &servers {
        let info = server.info("server").unwrap();
        assert_eq!(
            info_field(&info, "process_id"),
            Some(server.pid().unwrap().to_string())
        );
    }
    assert!(servers[0].cmd(&["SET", "only-here", "1"]).unwrap().is_ok());
    assert_eq!(
        servers[1].cmd(&["GET", "only-here"]).unwrap(),
        RespValue::Nil
    );
}

#[test]
fn a_subscriber_gets_published_messages_until_client_kill_drops_it() {
    let server = RedisServer::start();
    let mut subscriber = RedisConn::connect(server.port()).unwrap();
    assert_eq!(
        subscriber.cmd(&["SUBSCRIBE", "events"]).unwrap(),
        RespValue::Array(vec![
            bulk("subscribe"),
            bulk("events"),
            RespValue::Integer(1)
        ])
    );
    assert_eq!(
        server.cmd(&["PUBLISH", "events", "hello"]).unwrap(),
        RespValue::Integer(1)
    );
    assert_eq!(
        subscriber.read_reply().unwrap(),
        RespValue::Array(vec![bulk("message"), bulk("events"), bulk("hello")])
    );

    assert_eq!(
        server.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap(),
        RespValue::Integer(1)
    );
    assert!(subscriber.read_reply().is_err());
    assert_eq!(
        server.cmd(&["PUBLISH", "events", "lost"]).unwrap(),
        RespValue::Integer(0)
    );
}

#[test]
fn a_three_master_cluster_reaches_ok_and_serves_a_key_through_its_owning_node() {
    let cluster = RedisCluster::start(3);
    assert_eq!(cluster.ports().len(), 3);
    assert_eq!(
        cluster.urls(),
        cluster
            .ports()
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect::<Vec<_>>()
    );
    for i in 0..3 {
        assert_eq!(cluster.node_state(i).as_deref(), Some("ok"));
        let info = cluster.node(i).cmd(&["CLUSTER", "INFO"]).unwrap();
        let info = info.as_str().unwrap();
        assert_eq!(
            info_field(info, "cluster_known_nodes").as_deref(),
            Some("3")
        );
        assert_eq!(
            info_field(info, "cluster_slots_assigned").as_deref(),
            Some("16384")
        );
    }

    // A key that node 0 does not own: node 0 redirects, the owner stores it.
    let key = (0..1_000)
        .map(|i| format!("key:{i}"))
        .find(|key| cluster.owner_of(key) != 0)
        .expect("some key is owned by node 1 or 2");
    let slot = cluster.keyslot(&key);
    assert_eq!(
        redis_cmd(cluster.node(0).port(), &["CLUSTER", "KEYSLOT", &key]).unwrap(),
        RespValue::Integer(i64::from(slot))
    );
    let owner = cluster.node(cluster.owner_of(&key));
    let moved = redis_cmd(cluster.node(0).port(), &["SET", &key, "v"])
        .unwrap()
        .redirect()
        .expect("node 0 redirects a key it does not own");
    assert!(!moved.ask);
    assert_eq!((moved.slot, moved.port), (slot, owner.port()));
    assert!(redis_cmd(moved.port, &["SET", &key, "v"]).unwrap().is_ok());
    assert_eq!(owner.cmd(&["GET", &key]).unwrap(), bulk("v"));

    // The cluster-wide helper follows the redirection by itself.
    assert!(cluster.cmd(&["SET", &key, "w"]).unwrap().is_ok());
    assert_eq!(cluster.cmd(&["GET", &key]).unwrap(), bulk("w"));
}

#[test]
fn a_killed_cluster_node_rejoins_its_cluster_after_a_restart() {
    let cluster = RedisCluster::start(3);
    let key = "rejoin";
    let owner = cluster.owner_of(key);
    let port = cluster.node(owner).port();

    cluster.node(owner).kill();
    assert!(cluster.cmd(&["GET", key]).is_err_and(|e| !e.is_empty()));
    cluster.node(owner).restart();
    assert_eq!(cluster.node(owner).port(), port);
    cluster.wait_until_ok(Duration::from_secs(20));

    assert_eq!(cluster.owner_of(key), owner);
    assert!(cluster.cmd(&["SET", key, "back"]).unwrap().is_ok());
    assert_eq!(
        cluster.node(owner).cmd(&["GET", key]).unwrap(),
        bulk("back")
    );
}

/// Set in the copy of this test binary that
/// `a_test_process_that_dies_abruptly_leaves_no_server_behind` starts.
const DOOMED_CHILD: &str = "CACHETTE_HARNESS_DOOMED_CHILD";
const DOOMED_TEST: &str = "a_test_process_that_dies_abruptly_leaves_no_server_behind";

#[cfg(target_os = "linux")]
#[test]
fn a_test_process_that_dies_abruptly_leaves_no_server_behind() {
    if std::env::var_os(DOOMED_CHILD).is_some() {
        // The child: start a server, say which, and wait to be SIGKILLed
        // (so no destructor runs). Bounded in case nobody does.
        let server = RedisServer::start();
        println!(
            "server pid={} dir={}",
            server.pid().unwrap(),
            server.dir().display()
        );
        thread::sleep(Duration::from_secs(30));
        return;
    }

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([DOOMED_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(DOOMED_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let announced = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                // The test's name may precede it on the same line.
                if let Some((_, rest)) = line.split_once("server pid=") {
                    break Some(rest.to_owned());
                }
            }
            Err(_) => break None,
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let announced = announced.expect("the child announces its server");
    let (pid, dir) = announced.split_once(" dir=").unwrap();
    let pid: u32 = pid.parse().unwrap();
    let dir = std::path::PathBuf::from(dir);

    let deadline = Instant::now() + Duration::from_secs(5);
    while (process_alive(pid) || dir.exists()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !process_alive(pid),
        "redis-server {pid} outlived its test process"
    );
    assert!(!dir.exists(), "{} outlived its test process", dir.display());
}
