//! Limits end the offending request only, with the status DESIGN.md gives; the node and
//! other tenants carry on.

mod support;

use std::time::Duration;

use support::{Node, tenant};

const LIMITS: &str = "limits = { fuel = 50_000_000_000, cpu = \"200ms\", memory = \"32MiB\", timeout = \"1s\", concurrency = 16 }";

async fn node() -> Node {
    Node::start(&format!(
        "{}{}",
        tenant("limits", "limits", &["limits.test"], LIMITS),
        tenant("hello", "hello", &["hello.test"], ""),
    ))
    .await
}

/// The same tenant and another tenant still answer after a limit was hit.
async fn both_tenants_still_answer(node: &Node) {
    assert_eq!(node.get("limits.test", "/ok").await.body, "ok");
    assert_eq!(node.get("hello.test", "/").await.status, 200);
}

#[tokio::test]
async fn spin_hits_the_cpu_budget() {
    let node = node().await;
    let reply = node.get("limits.test", "/spin").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "cpu limit exceeded")
    );
    both_tenants_still_answer(&node).await;
    // The log records the CPU spent, within a tick or two of the 200 ms budget.
    let stopped = node
        .logs()
        .lines()
        .find(|line| line.contains("instance stopped") && line.contains("\"cpu\""))
        .expect("a log line for the stopped instance")
        .to_string();
    let log: serde_json::Value = serde_json::from_str(&stopped).unwrap();
    let cpu_ms = log["cpu_ms"].as_f64().unwrap();
    assert!((200.0..260.0).contains(&cpu_ms), "cpu_ms = {cpu_ms}");
}

#[tokio::test]
async fn spin_hits_the_fuel_budget_when_it_is_smaller() {
    let node = Node::start(&tenant(
        "fuel",
        "limits",
        &["/"],
        "limits = { fuel = 5_000_000 }",
    ))
    .await;
    let reply = node.get("any.test", "/spin").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "cpu limit exceeded")
    );
    assert_eq!(
        node.get("any.test", "/ok").await.body,
        "ok",
        "fuel is refilled per request"
    );
}

#[tokio::test]
async fn alloc_hits_the_memory_limit() {
    let node = node().await;
    let reply = node.get("limits.test", "/alloc").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "memory limit exceeded")
    );
    both_tenants_still_answer(&node).await;
}

#[tokio::test]
async fn trap_is_500_with_request_id_and_no_trap_text() {
    let node = node().await;
    let reply = node.get("limits.test", "/trap").await;
    let id = reply.header("x-request-id").unwrap().to_string();
    assert_eq!(reply.status, 500);
    assert_eq!(reply.body, format!("internal error (request id {id})"));
    assert!(!reply.body.contains("panic"));
    // The panic message goes to the node's log, tagged with the request id.
    let logs = node.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("panics on purpose") && l.contains(&id)),
        "the guest's panic is logged with its request id"
    );
    both_tenants_still_answer(&node).await;
}

#[tokio::test]
async fn sleep_past_the_timeout_is_504() {
    let node = node().await;
    let reply = node.get("limits.test", "/sleep?ms=5000").await;
    assert_eq!((reply.status, reply.body.as_str()), (504, "timeout"));
    let short = node.get("limits.test", "/sleep?ms=10").await;
    assert_eq!((short.status, short.body.as_str()), (200, "slept 10 ms"));
    both_tenants_still_answer(&node).await;
}

#[tokio::test]
async fn work_after_the_response_completes_and_is_logged() {
    let node = node().await;
    let reply = node.get("limits.test", "/after?ms=50").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "answered before the work")
    );
    let id = reply.header("x-request-id").unwrap().to_string();
    let finished = node
        .wait_for_log(|l| l.contains("after-response work finished") && l.contains(&id))
        .await;
    assert!(
        finished,
        "wait_until work ran to completion:\n{}",
        node.logs()
    );
}

#[tokio::test]
async fn work_after_the_response_is_still_limited() {
    let node = node().await;
    let reply = node.get("limits.test", "/after?spin=1").await;
    assert_eq!(reply.status, 200);
    let id = reply.header("x-request-id").unwrap().to_string();
    let stopped = node
        .wait_for_log(|l| {
            l.contains("instance stopped") && l.contains(&id) && l.contains("\"cpu\"")
        })
        .await;
    assert!(
        stopped,
        "a spinning wait_until is stopped by the CPU limit:\n{}",
        node.logs()
    );
    both_tenants_still_answer(&node).await;
}

#[tokio::test]
async fn over_the_concurrency_limit_is_503_with_retry_after() {
    let node = Node::start(&tenant(
        "one",
        "limits",
        &["/"],
        "limits = { concurrency = 1, timeout = \"5s\" }",
    ))
    .await;
    let node = std::sync::Arc::new(node);
    let sleep_in_the_slot = || {
        let node = node.clone();
        tokio::spawn(async move { node.get("x.test", "/sleep?ms=3000").await })
    };
    let mut slow = sleep_in_the_slot();
    // Until the slow request holds the one slot, `/ok` may still get it and answer 200;
    // and the slow request itself is refused if it arrives while an `/ok` holds it.
    let busy = loop {
        let reply = node.get("x.test", "/ok").await;
        if reply.status != 200 {
            break reply;
        }
        if slow.is_finished() {
            let ended = slow.await.unwrap();
            assert_eq!(
                (ended.status, ended.body.as_str()),
                (503, "tenant busy"),
                "the slow request was served, and no request met it holding the slot"
            );
            slow = sleep_in_the_slot();
        }
    };
    assert_eq!((busy.status, busy.body.as_str()), (503, "tenant busy"));
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(slow.await.unwrap().status, 200);
    // The slot is released when the instance is torn down, a moment after the client has
    // read the last byte; a request racing that moment may still see 503.
    let mut released = false;
    for _ in 0..100 {
        if node.get("x.test", "/ok").await.status == 200 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(released, "the slot is released after the slow request");
}

#[tokio::test]
async fn request_body_over_the_limit_is_413() {
    let node = Node::start(&tenant(
        "echo",
        "echo",
        &["/"],
        "limits = { body = \"1KiB\" }",
    ))
    .await;
    let big = node
        .send(
            http::Method::POST,
            "x.test",
            "/",
            &[],
            bytes::Bytes::from(vec![0u8; 4096]),
        )
        .await;
    assert_eq!(big.status, 413);
    let small = node
        .send(
            http::Method::POST,
            "x.test",
            "/",
            &[],
            bytes::Bytes::from(vec![0u8; 512]),
        )
        .await;
    assert_eq!(small.status, 200);
}

#[tokio::test]
async fn noisy_neighbour_does_not_starve_hello() {
    let node = std::sync::Arc::new(node().await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut spinners = Vec::new();
    for _ in 0..8 {
        let (node, stop) = (node.clone(), stop.clone());
        spinners.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(node.get("limits.test", "/spin").await.status);
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut answered = 0;
    for _ in 0..50 {
        let reply = node.get("hello.test", "/").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "hello from outpost")
        );
        answered += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut spun = 0;
    for spinner in spinners {
        let statuses = spinner.await.unwrap();
        // Eight spinners share two cores, so a spin may reach the 1 s wall clock before
        // its 200 ms of CPU: either limit is a correct end, anything else is not.
        assert!(
            statuses.iter().all(|s| *s == 503 || *s == 504),
            "every spin ends at a limit: {statuses:?}"
        );
        spun += statuses.len();
    }
    assert_eq!(answered, 50);
    assert!(spun >= 8, "the spinners really ran ({spun} spins)");
}

#[tokio::test]
async fn a_full_instance_pool_is_503_node_busy_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (config, addr) = support::write_config_with(
        dir.path(),
        2,
        &tenant(
            "slow",
            "limits",
            &["/"],
            "limits = { concurrency = 10, timeout = \"5s\" }",
        ),
    );
    let node = std::sync::Arc::new(Node::start_with(dir, &config, addr).await);
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move { node.get("x.test", "/sleep?ms=1500").await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = node.get("x.test", "/ok").await;
    assert_eq!((busy.status, busy.body.as_str()), (503, "node busy"));
    assert_eq!(busy.header("retry-after"), Some("1"));
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap(), 200);
    }
    assert_eq!(
        node.get("x.test", "/ok").await.status,
        200,
        "slots come back"
    );
}

#[tokio::test]
async fn unbounded_recursion_traps_its_request_only() {
    let node = node().await;
    let reply = node.get("limits.test", "/recurse").await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    let id = reply
        .header("x-request-id")
        .expect("request id")
        .to_string();
    assert!(
        node.logs()
            .lines()
            .any(|l| l.contains("call stack exhausted") && l.contains(&id)),
        "the stack overflow is logged with its request id"
    );
    both_tenants_still_answer(&node).await;
}

#[tokio::test]
async fn wasi_resources_held_at_once_are_capped_per_instance() {
    // They live in the host's memory, outside `limits.memory`.
    let node = node().await;
    let held = node.get("limits.test", "/resources?n=5000").await;
    assert_eq!(held.body, "holding 5000 resources");
    let bomb = node.get("limits.test", "/resources?n=50000").await;
    assert_eq!(bomb.status, 500, "{}", bomb.body);
    let id = bomb.header("x-request-id").expect("request id").to_string();
    let logs = node.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("resource table has no free keys") && l.contains(&id)),
        "the refusal is logged with its request id: {logs}"
    );
    both_tenants_still_answer(&node).await;
}

#[tokio::test]
async fn a_log_flood_is_cut_at_the_allowance_per_request() {
    let node = node().await;
    // 4 MiB of stderr, sixteen times the allowance.
    let reply = node.get("limits.test", "/shout?kib=4096").await;
    assert_eq!(reply.body, "wrote 4096 KiB to stderr");
    let id = reply
        .header("x-request-id")
        .expect("request id")
        .to_string();
    let logs = node.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("guest log allowance") && l.contains(&id)),
        "the cut is logged once, with the request id"
    );
    let kept = logs
        .lines()
        .filter(|l| l.contains(&id) && l.contains("xxxxxxxxxx"))
        .count() as u64;
    let allowance_lines = outpost_runtime::LOG_ALLOWANCE_BYTES / 1024;
    assert!(
        (allowance_lines - 1..=allowance_lines).contains(&kept),
        "{kept} lines of 1 KiB kept, for an allowance of {allowance_lines} KiB"
    );
    both_tenants_still_answer(&node).await;
}
