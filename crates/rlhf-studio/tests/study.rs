//! A blind study of three policies over HTTP: the page never names a policy, two annotators who
//! vote by the gold judge agree perfectly with each other and with gold, the results rank the
//! policies as the votes do, and writing them closes the study.

mod common;

use anyhow::{ensure, Result};
use common::{Server, Session};
use rlhf_data::{write_records, Demonstration, Preferred};
use serde_json::json;

/// The answers of policy `quality` (0 worst): better policies are more polite and on topic, as the
/// gold judge scores them.
fn answer(quality: usize, topic: &str) -> String {
    match quality {
        0 => format!(" {topic} bad bad bad"),
        1 => format!(" The {topic} is nice."),
        _ => format!(" Sure! The {topic} is lovely, thank you."),
    }
}

#[test]
fn a_blind_study_ranks_policies_as_the_votes_do_and_closes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let topics = ["cat", "garden", "river", "market", "forest", "city", "song", "boat", "tree"];
    let mut args: Vec<String> = Vec::new();
    for (quality, name) in ["sft", "dpo", "ppo"].iter().enumerate() {
        // On the first three topics the order of quality is reversed (so decisions vary).
        let rows: Vec<Demonstration> = topics
            .iter()
            .enumerate()
            .map(|(t, topic)| Demonstration {
                id: (*topic).into(),
                prompt: format!("User: Tell me about the {topic}.\nAssistant:"),
                response: answer(if t < 3 { 2 - quality } else { quality }, topic),
                prompt_messages: None,
            })
            .collect();
        let path = tmp.path().join(format!("responses_{name}.parquet"));
        write_records(&path, &rows)?;
        args.extend(["--policy".into(), format!("{name}={}", path.display())]);
    }
    let dir = tmp.path().join("study");
    let mut setup: Vec<&str> = vec!["--annotators", "ada,bob", "--overlap", "2"];
    setup.extend(args.iter().map(String::as_str));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"));
    command.arg("study");
    let server = Server::start_with(command, Some(&dir), &setup)?;
    let gold = rlhf_task::judge_by_name("gold", 0).unwrap();

    for name in ["ada", "bob"] {
        let session = Session::sign_in(&server.address, server.token(name))?;
        let page = session.get("/")?;
        ensure!(page.body.contains("name=\"mode\" content=\"study\""));
        let mut sides = Vec::new();
        loop {
            let next = session.get("/api/next")?;
            for policy in ["sft", "dpo", "ppo"] {
                ensure!(!next.body.contains(policy), "the page names {policy}: {}", next.body);
            }
            let next = next.json()?;
            if next["done"] == true {
                break;
            }
            let (prompt, responses) = (next["prompt"].as_str().unwrap(), next["responses"].as_array().unwrap());
            let (first, second) = (responses[0].as_str().unwrap(), responses[1].as_str().unwrap());
            sides.push(first.to_string());
            let verdict = gold.compare(&[(prompt, first, second)])?.remove(0);
            let vote = match verdict.preferred {
                Preferred::First => json!({ "ranking": [[0], [1]] }),
                Preferred::Second => json!({ "ranking": [[1], [0]] }),
                Preferred::Neither => json!({ "ranking": [[0, 1]] }),
            };
            let mut body = vote;
            body["item"] = next["item"].clone();
            let reply = session.post("/api/label", &body)?;
            ensure!(reply.status == 200, "{}", reply.body);
        }
        ensure!(sides.len() == topics.len(), "overlap 2 of 2: everyone votes on every item");
        // Sides are shuffled: the better policy is not always on the same side.
        let better_first = sides.iter().filter(|s| s.contains("Sure!") || s.contains("nice")).count();
        ensure!(better_first > 0 && better_first < sides.len(), "{sides:?}");
    }
    // Results need the server stopped.
    let busy =
        std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio")).args(["results", "--dir"]).arg(&dir).output()?;
    ensure!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("another rlhf-studio"));
    server.kill()?;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"))
        .args(["results", "--gold", "--dir"])
        .arg(&dir)
        .output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json"))?)?;
    let ratings = &report["study"]["ratings"];
    let rating = |name: &str| ratings[name]["rating"].as_f64().unwrap();
    ensure!(rating("ppo") > rating("dpo") && rating("dpo") > rating("sft"), "{ratings}");
    let pairs = report["study"]["pairs"].as_array().unwrap();
    let sft_ppo = pairs.iter().find(|p| p["a"] == "sft" && p["b"] == "ppo").unwrap();
    // sft meets ppo on three prompts and wins the one whose order is reversed, for both annotators.
    ensure!((sft_ppo["win_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9 && sft_ppo["votes"] == 6, "{sft_ppo}");
    ensure!(report["agreement"]["krippendorff_alpha"] == 1.0, "{}", report["agreement"]);
    ensure!(report["agreement"]["pairs"][0]["kappa"] == 1.0);
    let calibration = report["gold"]["annotators"].as_array().unwrap();
    ensure!(calibration.len() == 2 && calibration.iter().all(|a| a["agreement"] == 1.0), "{calibration:?}");
    let markdown = String::from_utf8(out.stdout)?;
    ensure!(markdown.contains("| sft | ppo | 6 |") && markdown.contains("Bradley–Terry"), "{markdown}");

    // Closed: no more votes.
    let reopened = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"))
        .args(["study", "--bind", "127.0.0.1:0", "--dir"])
        .arg(&dir)
        .output()?;
    ensure!(!reopened.status.success() && String::from_utf8_lossy(&reopened.stderr).contains("closed"));
    Ok(())
}
