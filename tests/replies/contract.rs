//! The delivery contract, end to end: what the provider is told when
//! fluxd accepts, is down, flaps, answers wrong, redirects, hangs or
//! restarts, when the queue is full, and when a hook fans out to two APIs;
//! and that identical pushes together reach fluxd at most twice.

use std::time::{Duration, Instant};

use flux_recv::options::Options;

use crate::budget;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_reaches_fluxd() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;

    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "ok: notified fluxd of 1 change(s)\n");
    assert_eq!(fluxd.take(), vec![git_notification("org/app", "main")]);

    // One log line for the hook, with the delivery id, never the key.
    let logs = recv.logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains(" hook,"))
        .expect("hook log line");
    for want in [
        "source: GitHub",
        "event: push",
        "delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "outcome: relayed",
        "status: 200",
        &format!("api: {}", fluxd.api()),
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    assert!(!logs.contains(std::str::from_utf8(GITHUB_KEY).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxd_down_is_202_within_the_budget_and_delivered_when_it_is_back() {
    let addr = dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &format!("http://{addr}/api/flux"));
    let recv = Recv::start(&config, budget(1000)).await;

    let body = github_body("org/app", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(
        reply.body,
        "accepted: fluxd has not confirmed 1 change(s) yet; flux-recv keeps delivering \
         them for up to 14 min\n"
    );
    // At the budget: not before it, and not long after (3 s spare for a
    // loaded machine; fluxd stays down, so nothing else would end the wait).
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(4000),
        "{took:?}"
    );
    // flux-recv can still take hooks: it stays ready.
    assert_eq!(get(recv.url("/ready")).await.status, 200);

    // fluxd comes back on its address: the notification reaches it within
    // seconds, and the late delivery is logged with its delivery id.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let fluxd = FakeFluxd::on(listener).await;
    let mut got = Vec::new();
    eventually(
        "delivered after fluxd's return",
        Duration::from_secs(5),
        || {
            got.extend(fluxd.take());
            !got.is_empty()
        },
    )
    .await;
    assert_eq!(got, vec![git_notification("org/app", "main")]);
    // fluxd has it before its answer reaches the worker that logs it.
    eventually("the late delivery logged", Duration::from_secs(5), || {
        recv.logs.text().contains("delivered late")
    })
    .await;
    let logs = recv.logs.text();
    let late = logs
        .lines()
        .find(|l| l.contains("delivered late"))
        .unwrap_or_else(|| panic!("no late delivery line in\n{logs}"));
    assert!(
        late.contains("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        "{late}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_fluxd_is_retried_until_it_accepts() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, budget(400)).await;
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    // 500, 429 and 408 are retried too: each is answered to an attempt,
    // and the notification is tried again after it. (Waiting for each
    // answer, not for a clock: backoff grows, and a loaded machine is slow.)
    for status in [500, 429, 408] {
        let answers = fluxd.answered().len();
        fluxd.set(Behaviour::Status(status));
        eventually(
            &format!("an attempt answered {status}"),
            Duration::from_secs(20),
            || fluxd.answered()[answers..].contains(&status),
        )
        .await;
    }
    fluxd.set(Behaviour::Accept);
    let queue = recv.service.queue();
    eventually("accepted once fluxd does", Duration::from_secs(20), || {
        queue.snapshot().targets.iter().any(|a| a.delivered == 1)
    })
    .await;
    // Retried after every failure, until the first 202; every attempt
    // carried the same notification.
    let answered = fluxd.answered();
    let failures: Vec<u16> = answered.iter().copied().filter(|s| *s != 202).collect();
    let mut kinds = failures.clone();
    kinds.dedup();
    assert_eq!(kinds, [503, 500, 429, 408], "{answered:?}");
    assert_eq!(answered, [&failures[..], &[202]].concat(), "{answered:?}");
    let received = fluxd.take();
    assert_eq!(received.len(), answered.len());
    assert!(received
        .iter()
        .all(|n| *n == git_notification("org/app", "main")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_path_is_502_naming_fluxds_answer() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The stand-in serves /api/flux/v11/notify only: this path gets 404.
    let (config, hook) = github_config(dir.path(), &format!("http://{}/flux", fluxd.addr));
    let recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    let started = Instant::now();
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(
        reply.body,
        "fluxd refused the notification: fluxd answered 404 Not Found\n"
    );
    // At once, not after the budget: a 404 is final.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let logs = recv.logs.text();
    assert!(
        logs.contains(&format!(
            "refused_by: http://{}/flux/v11/notify",
            fluxd.addr
        )),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_fluxd_is_refused_not_followed() {
    // The redirects point at a second stand-in, which records a POST there:
    // a 307 followed would re-send the notification to it.
    let target = FakeFluxd::start().await;
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    for status in [302, 307] {
        fluxd.set(Behaviour::Redirect(status, target.addr));
        let body = github_body("org/app", "main");
        let reply = post(recv.url(&hook), github_push(&body), body).await;
        assert_eq!(reply.status, 502, "{}", reply.body);
        assert!(reply.body.contains(&status.to_string()), "{}", reply.body);
        // One POST to fluxd, and nothing at the Location.
        assert_eq!(fluxd.take().len(), 1);
    }
    assert!(target.take().is_empty(), "followed a redirect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_fluxd_gets_202_at_the_budget_and_refusals_stay_fast() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Hang);
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    // A budget of seconds, so that "at once" below is an order of
    // magnitude apart from it even on a loaded machine.
    let budget = Duration::from_secs(3);
    let options = Options {
        reply_budget: budget,
        relay_timeout: Duration::from_secs(5),
        max_relays: 2,
        ..Options::default()
    };
    let recv = Recv::start(&config, options).await;

    // Distinct pushes: more than there are workers, each answered at the
    // budget.
    let started = Instant::now();
    let mut waiting = Vec::new();
    for repo in ["org/a", "org/b", "org/c"] {
        let body = github_body(repo, "main");
        waiting.push(tokio::spawn(post(
            recv.url(&hook),
            github_push(&body),
            body,
        )));
    }
    // The hanging fluxd holds its share of the workers (one API may hold
    // half of them: one of two).
    let queue = recv.service.queue();
    eventually(
        "the hanging fluxd's worker sending",
        Duration::from_secs(10),
        || queue.snapshot().sending == 1,
    )
    .await;

    // A bad signature needs no relay: refused at once, while every push
    // is still waiting out its budget.
    let body = github_body("org/d", "main");
    let reply = post(recv.url(&hook), github_push(b"other"), body).await;
    assert_eq!(reply.status, 401);
    assert!(
        waiting.iter().all(|w| !w.is_finished()) && started.elapsed() < budget,
        "the refusal waited {:?}",
        started.elapsed()
    );

    for w in waiting {
        let reply = w.await.unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    // Each at the budget: not before, and not long after (fluxd never
    // answers, so only the budget ends the wait).
    let took = started.elapsed();
    assert!(took >= budget && took < budget * 2, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_survives_a_fluxd_restart_within_the_budget() {
    // fluxd is down when the hook arrives and comes back 1 s later, on the
    // same address: the reply waits, and says 200.
    let addr = dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &format!("http://{addr}/api/flux"));
    let recv = Recv::start(&config, budget(4000)).await;

    let body = github_body("org/app", "main");
    let started = Instant::now();
    let pending = tokio::spawn(post(recv.url(&hook), github_push(&body), body));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let fluxd = FakeFluxd::on(listener).await;

    let reply = pending.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(fluxd.take(), vec![git_notification("org/app", "main")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_does_not_fit_the_queue_is_503_and_nothing_of_it_is_queued() {
    let addr = dead_addr();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bb.key"), GITHUB_KEY).unwrap();
    let config = write_config(
        dir.path(),
        &format!("http://{addr}/api/flux"),
        "- source: BitbucketCloud\n  keyPath: bb.key\n",
    );
    // An endpoint alone may have half of the queue waiting: three.
    let options = Options {
        max_pending: 6,
        reply_budget: Duration::ZERO,
        ..Options::default()
    };
    let recv = Recv::start(&config, options).await;
    let hook = recv.url(&hook_path(GITHUB_KEY));
    let push = |branches: &[&str]| bitbucket_push(branches);
    let headers = || vec![("X-Event-Key".to_string(), "repo:push".to_string())];

    // What fits is taken: 202 at once (a zero budget never waits).
    let reply = post(hook.clone(), headers(), push(&["a", "b"])).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(recv.service.queue().snapshot().pending, 2);

    let reply = post(hook.clone(), headers(), push(&["c", "d"])).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.retry_after.as_deref(), Some("5"));
    for want in [
        "(2 of at most 6, 2 of them from this endpoint)",
        "nothing of this delivery was queued",
    ] {
        assert!(reply.body.contains(want), "{want} not in {}", reply.body);
    }
    assert_eq!(recv.service.queue().snapshot().pending, 2);

    // Joining what is pending takes no room.
    let reply = post(hook, headers(), push(&["b", "c"])).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(recv.service.queue().snapshot().pending, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_with_one_api_down_delivers_to_the_other() {
    let up = FakeFluxd::start().await;
    let down = format!("http://{}/api/flux", dead_addr());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("github.key"), GITHUB_KEY).unwrap();
    let config = write_config(
        dir.path(),
        &up.api(),
        &format!(
            "- source: GitHub\n  keyPath: github.key\n  api:\n  - {down}\n  - {}\n",
            up.api()
        ),
    );
    let recv = Recv::start(&config, budget(300)).await;
    let hook = hook_path(GITHUB_KEY);
    let body = github_body("org/app", "main");
    let reply = post(recv.url(&hook), github_push(&body), body).await;
    // Not every API confirmed: 202.
    assert_eq!(reply.status, 202, "{}", reply.body);
    // The one that is up got it at once, however long the other is away.
    assert_eq!(up.take(), vec![git_notification("org/app", "main")]);
    let snapshot = recv.service.queue().snapshot();
    let down_url = format!("{down}/v11/notify");
    let down_api = snapshot
        .targets
        .iter()
        .find(|a| *a.target == *down_url)
        .expect("the down API has its own entry");
    assert_eq!(down_api.pending, 1);
    let up_url = format!("{}/v11/notify", up.api());
    let up_api = snapshot
        .targets
        .iter()
        .find(|a| *a.target == *up_url)
        .unwrap();
    assert_eq!((up_api.pending, up_api.delivered), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_pushes_together_reach_fluxd_at_most_twice() {
    let fluxd = FakeFluxd::start().await;
    fluxd.set(Behaviour::Delay(300));
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;

    let mut storm = Vec::new();
    for _ in 0..10 {
        let body = github_body("org/app", "main");
        storm.push(tokio::spawn(post(
            recv.url(&hook),
            github_push(&body),
            body,
        )));
    }
    let other = github_body("org/other", "main");
    storm.push(tokio::spawn(post(
        recv.url(&hook),
        github_push(&other),
        other,
    )));
    for h in storm {
        assert_eq!(h.await.unwrap().status, 200);
    }
    let received = fluxd.take();
    let app = received
        .iter()
        .filter(|n| **n == git_notification("org/app", "main"))
        .count();
    // Those that came while one was queued joined it; those that came while
    // it was being sent got exactly one more send.
    assert!(
        (1..=2).contains(&app),
        "{app} sends of ten identical pushes"
    );
    assert_eq!(received.len(), app + 1);
}
