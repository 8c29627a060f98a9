//! The studio server over HTTP: eight annotators posting at once lose and duplicate nothing, a
//! kill -9 loses no acknowledged label and everyone resumes where they stopped, and the guards
//! (personal links, CSRF, origin, body size, other annotators' items) hold.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::{request, samples, Server, Session, XSS};
use rlhf_data::{read_records, validate_table, Comparison, Kind, Ranking};
use rlhf_studio::journal::{Journal, Label, Verdict};
use serde_json::json;

/// Ranks the shown responses in their shown order (slot 0 best), retrying on 429.
fn rank_next(session: &Session) -> Result<Option<(String, bool)>> {
    let next = session.get("/api/next")?.json()?;
    if next["done"] == true {
        return Ok(None);
    }
    let item = next["item"].as_str().unwrap().to_string();
    let slots = next["responses"].as_array().unwrap().len();
    let ranking: Vec<Vec<usize>> = (0..slots).map(|slot| vec![slot]).collect();
    loop {
        let reply = session.post("/api/label", &json!({ "item": item, "ranking": ranking, "rationale": "" }))?;
        match reply.status {
            200 => return Ok(Some((item, reply.json()?["duplicate"] == false))),
            429 => std::thread::sleep(Duration::from_millis(50)),
            status => anyhow::bail!("label: {status} {}", reply.body),
        }
    }
}

#[test]
fn eight_annotators_at_once_then_a_kill_lose_and_duplicate_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let table = tmp.path().join("samples.parquet");
    samples(&table, 300)?;
    let dir = tmp.path().join("studio");
    let names: Vec<String> = (0..8).map(|i| format!("a{i}")).collect();
    let server = Server::start(
        &dir,
        &["--samples", table.to_str().unwrap(), "--annotators", &names.join(","), "--overlap", "3"],
    )?;
    ensure!(server.links.len() == 8);

    // Every annotator posts as fast as the server lets them, until the server is killed under them.
    let acknowledged: Vec<Vec<String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = names
            .iter()
            .map(|name| {
                let (address, token) = (server.address.clone(), server.token(name).to_string());
                scope.spawn(move || -> Result<Vec<String>> {
                    let session = Session::sign_in(&address, &token)?;
                    let mut done = Vec::new();
                    // Until the kill: a request the dead server cannot answer ends the run.
                    while let Ok(next) = rank_next(&session) {
                        match next {
                            Some((item, true)) => done.push(item),
                            Some((item, false)) => anyhow::bail!("{item} was served again after it was labelled"),
                            None => anyhow::bail!("ran out of items before the kill"),
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(2500));
        server.kill().unwrap();
        workers.into_iter().map(|w| w.join().unwrap()).collect::<Result<_>>()
    })?;

    let labels = Journal::<Label>::read(&dir.join("journal.jsonl"))?;
    let mut journaled: HashMap<(String, String), usize> = HashMap::new();
    for label in &labels {
        *journaled.entry((label.annotator.clone(), label.item.clone())).or_default() += 1;
    }
    let total: usize = acknowledged.iter().map(Vec::len).sum();
    ensure!(acknowledged.iter().all(|items| !items.is_empty()), "someone labelled nothing before the kill");
    ensure!(journaled.values().all(|&n| n == 1), "a label is journaled twice");
    for (name, items) in names.iter().zip(&acknowledged) {
        for item in items {
            ensure!(journaled.contains_key(&(name.clone(), item.clone())), "acknowledged {name}/{item} is lost");
        }
    }
    // A label in flight at the kill may have reached the disk without its answer reaching the client:
    // at most one per annotator.
    let kept = labels.len();
    ensure!(kept >= total && kept <= total + names.len(), "{kept} journaled, {total} acknowledged");
    // Overlap 3: each item is shown to three annotators, no more.
    let mut per_item: HashMap<&str, usize> = HashMap::new();
    for label in &labels {
        *per_item.entry(label.item.as_str()).or_default() += 1;
    }
    ensure!(per_item.values().all(|&n| n <= 3));

    // Restarted (same command without the set-up flags), everyone goes on where they stopped.
    let server = Server::start(&dir, &[])?;
    for (name, items) in names.iter().zip(&acknowledged) {
        let session = Session::sign_in(&server.address, server.token(name))?;
        let next = session.get("/api/next")?.json()?;
        let journaled_by = labels.iter().filter(|l| &l.annotator == name).count();
        ensure!(next["progress"]["labelled"] == journaled_by, "{name}: {}", next["progress"]);
        if let Some(item) = next["item"].as_str() {
            ensure!(!items.iter().any(|i| i == item), "{name} is shown {item} again");
        }
        // Labelling an item again is acknowledged but not recorded twice.
        if let Some(first) = items.first() {
            let reply = session.post("/api/label", &json!({ "item": first, "ranking": [[0], [1], [2]] }))?;
            ensure!(reply.status == 200 && reply.json()?["duplicate"] == true, "{}", reply.body);
        }
    }
    drop(server);
    ensure!(
        Journal::<Label>::read(&dir.join("journal.jsonl"))?.len() == kept,
        "a label sent again was journaled again"
    );

    // The tables: every label's pairs, each a valid table of its kind.
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio")).args(["export", "--dir"]).arg(&dir).output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    validate_table(dir.join("rankings.parquet"), Kind::Rankings)?;
    validate_table(dir.join("comparisons.parquet"), Kind::Comparisons)?;
    let rankings: Vec<Ranking> = read_records(dir.join("rankings.parquet"))?;
    let comparisons: Vec<Comparison> = read_records(dir.join("comparisons.parquet"))?;
    ensure!(rankings.len() == kept && comparisons.len() == 3 * kept);
    ensure!(rankings.iter().all(|r| r.annotator.as_deref().is_some_and(|a| a.starts_with("human:a"))));
    Ok(())
}

#[test]
fn the_guards_hold() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let table = tmp.path().join("samples.parquet");
    samples(&table, 6)?;
    let dir = tmp.path().join("studio");
    let server = Server::start(&dir, &["--samples", table.to_str().unwrap(), "--annotators", "ada,bob"])?;
    let address = server.address.as_str();
    let ada = Session::sign_in(address, server.token("ada"))?;
    let bob = Session::sign_in(address, server.token("bob"))?;

    // No link, no way in; a made-up link is unknown.
    ensure!(request(address, "GET", "/api/next", &[], "")?.status == 401);
    ensure!(request(address, "GET", "/", &[], "")?.status == 401);
    ensure!(request(address, "GET", "/login/0123456789abcdef0123456789abcdef", &[], "")?.status == 404);
    let page = request(address, "GET", "/", &[("cookie", &ada.cookie)], "")?;
    let policy = page.header("content-security-policy").unwrap_or_default();
    ensure!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");

    // Data travels as JSON, the markup in it untouched (the page puts it in place as text).
    let next = ada.get("/api/next")?.json()?;
    let item = next["item"].as_str().unwrap().to_string();
    let body = json!({ "item": item, "ranking": [[0], [1], [2]] }).to_string();
    let post = |headers: &[(&str, &str)], body: &str| request(address, "POST", "/api/label", headers, body);
    let json_type = ("content-type", "application/json");
    // No CSRF token, a wrong one, another annotator's, a foreign origin: refused, nothing journaled.
    ensure!(post(&[("cookie", &ada.cookie), json_type], &body)?.status == 403);
    ensure!(post(&[("cookie", &ada.cookie), ("x-csrf-token", "00"), json_type], &body)?.status == 403);
    ensure!(post(&[("cookie", &ada.cookie), ("x-csrf-token", &bob.csrf), json_type], &body)?.status == 403);
    let foreign = [
        ("cookie", ada.cookie.as_str()),
        ("x-csrf-token", ada.csrf.as_str()),
        json_type,
        ("origin", "http://evil.example"),
    ];
    ensure!(post(&foreign, &body)?.status == 403);
    // Too big a body, a malformed ranking, an unknown item, someone else's item.
    let huge = json!({ "item": item, "ranking": [[0], [1], [2]], "rationale": "x".repeat(100_000) });
    ensure!(ada.post("/api/label", &huge)?.status == 413);
    ensure!(ada.post("/api/label", &json!({ "item": item, "ranking": [[0], [0], [1]] }))?.status == 422);
    ensure!(ada.post("/api/label", &json!({ "item": "nope", "ranking": [[0], [1], [2]] }))?.status == 404);
    let bobs = bob.get("/api/next")?.json()?["item"].as_str().unwrap().to_string();
    ensure!(bobs != item, "overlap 1: ada and bob have their own items");
    ensure!(ada.post("/api/label", &json!({ "item": bobs, "ranking": [[0], [1], [2]] }))?.status == 403);
    ensure!(Journal::<Label>::read(&dir.join("journal.jsonl"))?.is_empty(), "a refused post was journaled");

    // A tie and a skip are recorded as such.
    ensure!(
        ada.post("/api/label", &json!({ "item": item, "ranking": [[0, 1], [2]], "rationale": "why" }))?.status == 200
    );
    let skipped = ada.get("/api/next")?.json()?["item"].as_str().unwrap().to_string();
    ensure!(ada.post("/api/label", &json!({ "item": skipped, "skip": true }))?.status == 200);
    let labels = Journal::<Label>::read(&dir.join("journal.jsonl"))?;
    ensure!(
        matches!(&labels[0].verdict, Verdict::Ranked { levels } if { let mut l = levels.clone(); l.sort(); l == [0, 0, 1] })
    );
    ensure!(labels[1].verdict == Verdict::Skipped && labels[0].rationale == "why");

    // A second server on the same studio is refused while the first runs.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"))
        .args(["label", "--bind", "127.0.0.1:0", "--dir"])
        .arg(&dir)
        .output()?;
    let stderr = String::from_utf8_lossy(&second.stderr);
    ensure!(!second.status.success() && stderr.contains("another rlhf-studio is serving"), "{stderr}");
    ensure!(XSS.contains("<script>"));
    Ok(())
}

#[test]
fn bad_set_ups_are_one_clear_error_and_leave_no_studio() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let studio = |args: &[&str]| -> Result<(bool, String)> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"))
            .args(["label", "--bind", "127.0.0.1:0", "--dir"])
            .arg(tmp.path().join("studio"))
            .args(args)
            .output()?;
        Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_string()))
    };
    let table = tmp.path().join("samples.parquet");
    samples(&table, 2)?;
    let missing = tmp.path().join("missing.parquet");
    for (args, expected) in [
        (vec!["--annotators", "ada"], "give --samples"),
        (vec!["--samples", table.to_str().unwrap()], "give --annotators"),
        (vec!["--samples", table.to_str().unwrap(), "--annotators", "Ada Lovelace"], "annotator name `Ada Lovelace`"),
        (vec!["--samples", table.to_str().unwrap(), "--annotators", "ada,ada"], "named twice"),
        (vec!["--samples", missing.to_str().unwrap(), "--annotators", "ada"], "missing.parquet"),
    ] {
        let (ok, stderr) = studio(&args)?;
        ensure!(!ok && stderr.lines().count() == 1 && stderr.contains(expected), "{args:?}: {stderr}");
        ensure!(!tmp.path().join("studio").exists(), "{args:?} left a studio");
    }
    Ok(())
}

#[test]
fn the_runs_page_lists_stages_and_reports_by_index_and_needs_its_link() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let runs = tmp.path().join("runs");
    let metric =
        |step, value| rlhf_data::Metric { stage: "sft".into(), step, name: "train/loss".into(), value, wall_time: 0.0 };
    rlhf_data::write_records(runs.join("default/sft/metrics.parquet"), &[metric(1, 2.0), metric(2, 1.5)])?;
    std::fs::create_dir_all(runs.join("default/eval"))?;
    std::fs::write(runs.join("default/eval/report.html"), "<html><body><script>x()</script>report</body></html>")?;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"));
    command.args(["runs", "--runs"]).arg(&runs).args(["--bind", "127.0.0.1:0"]);
    let mut child = command.stdout(std::process::Stdio::piped()).spawn()?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut link = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(url) = line.strip_prefix("rlhf-studio: runs page: http://") {
            link = Some(url.to_string());
        }
        if line.starts_with("rlhf-studio: ready") {
            break;
        }
    }
    let link = link.expect("the runs page's link");
    let (address, login) = link.split_once('/').unwrap();
    let guard = scopeguard(child);

    ensure!(request(address, "GET", "/api/runs", &[], "")?.status == 401);
    let signed = request(address, "GET", &format!("/{login}"), &[], "")?;
    ensure!(signed.status == 303 && signed.header("location") == Some("/runs"));
    let cookie = signed.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let get = |path: &str| request(address, "GET", path, &[("cookie", &cookie)], "");
    ensure!(get("/runs")?.status == 200);
    let list = get("/api/runs")?.json()?;
    let names: Vec<&str> = list["runs"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    ensure!(names == ["default/eval", "default/sft"], "{list}");
    let metrics = get("/api/runs/1/metrics")?.json()?;
    ensure!(metrics["series"]["train/loss"] == json!([[1, 2.0], [2, 1.5]]), "{metrics}");
    let report = get("/api/runs/0/report")?;
    let policy = report.header("content-security-policy").unwrap_or_default();
    ensure!(report.status == 200 && policy.starts_with("sandbox") && !policy.contains("script-src"), "{policy}");
    // Entries are numbers from the scan, nothing else: no path reaches the file system.
    ensure!(get("/api/runs/7/metrics")?.status == 404);
    ensure!(get("/api/runs/..%2F..%2Fetc/metrics")?.status == 400);
    ensure!(get("/api/next")?.status == 404, "a runs-only server has no studio");
    drop(guard);
    Ok(())
}

/// Kills the child when dropped.
fn scopeguard(child: std::process::Child) -> impl Drop {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    Kill(child)
}
