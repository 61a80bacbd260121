//! Prometheus metrics (`--metrics-listen`): a real node is driven by kcat (produce, fetch, a
//! consumer group), `/metrics` is scraped over a plain TCP connection, the values are
//! checked to have moved as the traffic says, and the text is validated by
//! `promtool check metrics` (Debian's prometheus package; `tests/setup` installs it), which
//! must pass with no lint finding. A 3-node cluster shows leadership and replication:
//! the partitions led across nodes add up to the topic's; once a node stops, the survivors
//! count the elections, report under-replicated partitions and, after more records, the
//! stopped follower's high-watermark lag; once it is back, both fall to zero.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use myelin_client::{ClientConfig, Connection};
use myelin_tests::clients::{self, StreamingClient, CLIENT_TIMEOUT};
use myelin_tests::node::{
    cluster_diagnostics, free_port, myelin_binary, start_cluster, wait_with_deadline,
};
use myelin_tests::{Node, NodeConfig};

/// How long a condition polled below may take to hold.
const DEADLINE: Duration = Duration::from_secs(60);
const MESSAGES: usize = 200;

/// One scrape: the status line, the headers and the body of `GET path`.
struct HttpAnswer {
    status_line: String,
    headers: String,
    body: String,
}

fn http_get(addr: SocketAddr, path: &str) -> HttpAnswer {
    http_request(addr, "GET", path)
}

fn http_request(addr: SocketAddr, method: &str, path: &str) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set a read timeout");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("read the answer until the server closes");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {answer:?}"));
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    HttpAnswer {
        status_line: status_line.to_string(),
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

/// The exposition text of `addr`'s `/metrics` (asserting the answer's status and type).
fn scrape(addr: SocketAddr) -> String {
    let answer = http_get(addr, "/metrics");
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK", "{}", answer.body);
    assert!(
        answer
            .headers
            .contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        answer.headers
    );
    answer.body
}

/// The samples of `text`: (name, labels) -> value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                other => other.parse().unwrap_or_else(|_| panic!("value of {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            // The label values checked here hold no comma, quote or backslash.
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (label, value) = pair.split_once('=').expect("label=value");
                    (label.to_string(), value.trim_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value)
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels` (0 if none).
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(sample, sample_labels, _)| {
            sample == name
                && labels.iter().all(|(label, value)| {
                    sample_labels.get(*label).map(String::as_str) == Some(value)
                })
        })
        .map(|(_, _, value)| value)
        .sum()
}

/// Polls `addr`'s metrics until `holds` accepts them; panics with the last text after
/// [`DEADLINE`].
fn scrape_until(addr: SocketAddr, what: &str, holds: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = scrape(addr);
        if holds(&text) {
            return text;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}; last scrape:\n{text}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// `promtool check metrics` on `text`: must succeed and find nothing to lint.
fn promtool_check(text: &str) {
    let promtool = clients::find_in_path("promtool").unwrap_or_else(|| {
        panic!("promtool is not on PATH: run tests/setup (installs Debian's prometheus package)")
    });
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\n--- text ---\n{text}",
        output.status
    );
}

/// A node serving its metrics on a free port of its own: the node and that address.
fn node_with_metrics(name: &str) -> (Node, SocketAddr) {
    let metrics_port = free_port();
    let config = NodeConfig {
        extra_args: vec![
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
        ],
        ..NodeConfig::default()
    };
    let node = Node::start_with(name, config);
    (node, SocketAddr::from(([127, 0, 0, 1], metrics_port)))
}

#[test]
fn a_node_counts_requests_bytes_groups_connections_and_syncs_and_promtool_accepts_the_text() {
    let (node, addr) = node_with_metrics("metrics_single");
    assert_eq!(node.metrics_addr(), Some(addr), "{}", node.log_tail());

    // Before any traffic the text is already valid.
    promtool_check(&scrape(addr));

    let topic = "metrics-topic";
    let payload: String = (0..MESSAGES).map(|i| format!("message-{i:05}\n")).collect();
    let value_bytes = (MESSAGES * "message-00000".len()) as f64;
    let mut produce = Command::new(clients::kcat());
    produce.args(["-P", "-b", &node.bootstrap(), "-t", topic]);
    let produced = clients::run(produce, Some(payload.as_bytes()), CLIENT_TIMEOUT);
    assert!(produced.status.success(), "{}", produced.describe());
    let mut consume = Command::new(clients::kcat());
    consume.args([
        "-C",
        "-b",
        &node.bootstrap(),
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
    ]);
    let consumed = clients::run(consume, None, CLIENT_TIMEOUT);
    assert!(consumed.status.success(), "{}", consumed.describe());
    assert_eq!(
        consumed.stdout.lines().count(),
        MESSAGES,
        "{}",
        consumed.describe()
    );

    let mut group = Command::new(clients::kcat());
    group.args(["-b", &node.bootstrap(), "-G", "metrics-group", topic]);
    let member = StreamingClient::spawn(group);
    let text = scrape_until(addr, "the group has a member", |text| {
        sum(text, "myelin_consumer_group_members", &[]) >= 1.0
            && sum(text, "myelin_consumer_groups", &[("state", "Stable")]) >= 1.0
    });

    assert!(
        sum(&text, "myelin_requests_total", &[("api", "Produce")]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "myelin_requests_total", &[("api", "Fetch")]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "myelin_requests_total", &[("api", "JoinGroup")]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(
            &text,
            "myelin_request_duration_seconds_count",
            &[("api", "Produce")]
        ) >= 1.0,
        "{text}"
    );
    let produced_bytes = sum(&text, "myelin_produced_bytes_total", &[("topic", topic)]);
    assert!(
        produced_bytes >= value_bytes,
        "{produced_bytes} < {value_bytes}\n{text}"
    );
    let fetched_bytes = sum(&text, "myelin_fetched_bytes_total", &[("topic", topic)]);
    assert!(
        fetched_bytes >= value_bytes,
        "{fetched_bytes} < {value_bytes}\n{text}"
    );
    assert!(sum(&text, "myelin_connections_open", &[]) >= 1.0, "{text}");
    assert!(
        sum(&text, "myelin_connections_accepted_total", &[]) >= 3.0,
        "{text}"
    );
    assert!(
        sum(&text, "myelin_fsync_duration_seconds_count", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "myelin_group_commit_appends_count", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "myelin_group_commit_bytes_sum", &[]) >= value_bytes,
        "{text}"
    );
    assert_eq!(
        sum(&text, "myelin_partitions_led", &[("topic", topic)]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "myelin_under_replicated_partitions", &[]),
        0.0,
        "{text}"
    );
    assert!(
        sum(&text, "myelin_leaderships_won_total", &[]) >= 1.0,
        "{text}"
    );
    promtool_check(&text);

    // Only GET and HEAD /metrics are served; HEAD answers GET's head alone.
    assert!(http_get(addr, "/").status_line.starts_with("HTTP/1.1 404"));
    let head = http_request(addr, "HEAD", "/metrics");
    assert_eq!(head.status_line, "HTTP/1.1 200 OK", "{}", head.body);
    assert!(
        head.headers.contains("Content-Length: "),
        "{}",
        head.headers
    );
    assert!(head.body.is_empty(), "{}", head.body);
    drop(member.kill());
}

/// Sends an ApiVersions request of version 99 (unknown to every broker) over a raw
/// connection and returns its answer's error code.
fn api_versions_of_an_unknown_version(kafka: &str) -> i16 {
    let mut stream = TcpStream::connect(kafka).unwrap_or_else(|e| panic!("connect {kafka}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set a read timeout");
    // Header v1: api key 18, version 99, correlation id 7, client id "t".
    let mut request = Vec::new();
    request.extend(18i16.to_be_bytes());
    request.extend(99i16.to_be_bytes());
    request.extend(7i32.to_be_bytes());
    request.extend(1i16.to_be_bytes());
    request.push(b't');
    let mut frame = (request.len() as i32).to_be_bytes().to_vec();
    frame.extend(request);
    stream.write_all(&frame).expect("send ApiVersions");
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).expect("an answer's length");
    let mut answer = vec![0u8; i32::from_be_bytes(length) as usize];
    stream.read_exact(&mut answer).expect("the answer");
    assert_eq!(answer[..4], 7i32.to_be_bytes(), "correlation id");
    i16::from_be_bytes([answer[4], answer[5]])
}

#[test]
fn an_api_versions_request_of_an_unknown_version_counts_as_a_request_and_an_error() {
    let (node, addr) = node_with_metrics("metrics_unknown_version");
    assert_eq!(api_versions_of_an_unknown_version(&node.bootstrap()), 35);
    let text = scrape_until(addr, "the refused ApiVersions is counted", |text| {
        sum(
            text,
            "myelin_request_errors_total",
            &[("api", "ApiVersions"), ("code", "35")],
        ) == 1.0
    });
    assert_eq!(
        sum(&text, "myelin_requests_total", &[("api", "ApiVersions")]),
        1.0,
        "{text}"
    );
}

#[test]
fn a_cluster_reports_elections_under_replication_and_follower_lag_as_a_node_stops_and_returns() {
    let mut nodes = start_cluster("metrics_cluster", 3);
    let metrics: Vec<SocketAddr> = nodes
        .iter()
        .map(|node| {
            node.metrics_addr()
                .unwrap_or_else(|| panic!("no metrics address in the log\n{}", node.log_tail()))
        })
        .collect();
    let topic = "replicated";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    loop {
        let created = runtime.block_on(async {
            let mut connection =
                Connection::connect(nodes[0].addr(), ClientConfig::default()).await?;
            connection.create_topic(topic, 3, 3, &[]).await
        });
        match created {
            Ok(()) => break,
            Err(error) => assert!(
                started.elapsed() < DEADLINE,
                "creating {topic}: {error}\n{}",
                cluster_diagnostics(&nodes)
            ),
        }
        thread::sleep(Duration::from_millis(200));
    }

    let led = |texts: &[String]| -> f64 {
        texts
            .iter()
            .map(|text| sum(text, "myelin_partitions_led", &[("topic", topic)]))
            .sum()
    };
    let started = Instant::now();
    loop {
        let texts: Vec<String> = metrics.iter().map(|addr| scrape(*addr)).collect();
        if led(&texts) == 3.0 {
            for text in &texts {
                promtool_check(text);
            }
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the partitions led add up to {} of 3\n{texts:?}",
            led(&texts)
        );
        thread::sleep(Duration::from_millis(200));
    }

    // Elections: what node 3 leads now, the survivors win once it stops.
    let won = |addrs: &[SocketAddr]| -> f64 {
        addrs
            .iter()
            .map(|addr| sum(&scrape(*addr), "myelin_leaderships_won_total", &[]))
            .sum()
    };
    let won_before = won(&metrics[..2]);
    // (Partitions are spread over the nodes, so node 3 leads some; if it led none, no
    // election would be due.)
    let elections_due = sum(&scrape(metrics[2]), "myelin_partitions_led", &[]) >= 1.0;
    nodes[2].stop();
    let started = Instant::now();
    loop {
        let texts: Vec<String> = metrics[..2].iter().map(|addr| scrape(*addr)).collect();
        let under: f64 = texts
            .iter()
            .map(|text| {
                sum(
                    text,
                    "myelin_under_replicated_partitions",
                    &[("topic", topic)],
                )
            })
            .sum();
        let stopped_lag_series = texts
            .iter()
            .map(|text| {
                samples(text)
                    .into_iter()
                    .filter(|(name, labels, _)| {
                        name == "myelin_follower_lag_offsets"
                            && labels.get("follower").map(String::as_str) == Some("3")
                    })
                    .count()
            })
            .sum::<usize>();
        if under > 0.0
            && stopped_lag_series > 0
            && (!elections_due || won(&metrics[..2]) > won_before)
        {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no surviving leader reports under-replicated partitions of {topic} (or no \
             election was counted)\n{texts:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }

    // Records committed by the two survivors leave the stopped follower behind the high
    // watermark: its high-watermark lag rises on their leaders.
    let payload: String = (0..MESSAGES).map(|i| format!("behind-{i}\n")).collect();
    let mut produce = Command::new(clients::kcat());
    produce.args(["-P", "-b", &nodes[0].bootstrap(), "-t", topic]);
    let produced = clients::run(produce, Some(payload.as_bytes()), CLIENT_TIMEOUT);
    assert!(produced.status.success(), "{}", produced.describe());
    let started = Instant::now();
    loop {
        let texts: Vec<String> = metrics[..2].iter().map(|addr| scrape(*addr)).collect();
        let lag: f64 = texts
            .iter()
            .map(|text| {
                sum(
                    text,
                    "myelin_follower_lag_offsets",
                    &[("topic", topic), ("follower", "3")],
                )
            })
            .sum();
        if lag >= MESSAGES as f64 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the stopped follower's lag is {lag}, not {MESSAGES}\n{texts:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }

    // Back, node 3 catches up: the survivors see no partition under-replicated and no
    // follower lagging.
    nodes[2].restart();
    let started = Instant::now();
    loop {
        let texts: Vec<String> = metrics[..2].iter().map(|addr| scrape(*addr)).collect();
        let under: f64 = texts
            .iter()
            .map(|text| sum(text, "myelin_under_replicated_partitions", &[]))
            .sum();
        let lag: f64 = texts
            .iter()
            .map(|text| sum(text, "myelin_follower_lag_offsets", &[]))
            .sum();
        if under == 0.0 && lag == 0.0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "after node 3 returned: {under} under-replicated, lag {lag}\n{texts:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_metrics_port_that_cannot_be_bound_stops_the_node_at_start_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let taken = taken.local_addr().expect("its address");
    let data_dir = tempfile::tempdir().expect("a data dir");
    let log_path = data_dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut child = Command::new(myelin_binary())
        .args(["node", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(data_dir.path().join("data"))
        .args(["--metrics-listen", &taken.to_string()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("start myelin node");
    let status = wait_with_deadline(&mut child, DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the node kept running with its metrics port taken")
    });
    let log = std::fs::read_to_string(&log_path).expect("read the log");
    assert!(!status.success(), "{status}\n{log}");
    assert!(
        log.contains(&format!(
            "binding the metrics listener (--metrics-listen) to {taken}"
        )),
        "{log}"
    );
}

#[test]
fn a_node_whose_default_metrics_port_is_taken_serves_kafka_without_metrics() {
    // A Kafka port whose + 2 another process holds.
    let (kafka_port, _taken) = loop {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
        let port = taken.local_addr().expect("its address").port();
        if let Some(kafka_port) = port.checked_sub(2) {
            if std::net::TcpListener::bind(("127.0.0.1", kafka_port)).is_ok() {
                break (kafka_port, taken);
            }
        }
    };
    let data_dir = tempfile::tempdir().expect("a data dir");
    let log_path = data_dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut child = Command::new(myelin_binary())
        .args(["node", "--listen", &format!("127.0.0.1:{kafka_port}")])
        .arg("--data-dir")
        .arg(data_dir.path().join("data"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("start myelin node");
    let started = Instant::now();
    let served = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the node stopped ({status}) with its default metrics port taken\n{log}");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let metadata = runtime.block_on(async {
            let mut conn =
                Connection::connect(&format!("127.0.0.1:{kafka_port}"), ClientConfig::default())
                    .await?;
            conn.metadata(None).await
        });
        if metadata.is_ok() {
            break true;
        }
        if started.elapsed() > DEADLINE {
            break false;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).expect("read the log");
    assert!(served, "the node never answered Metadata\n{log}");
    assert!(log.contains("metrics are off"), "{log}");
}
