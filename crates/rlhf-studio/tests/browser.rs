//! The studio in a real browser (headless Chromium over CDP): an annotator ranks items by keyboard
//! alone, the server is killed with SIGKILL mid-session and restarted, every acknowledged label is
//! there and the annotator goes on where they stopped; a response holding HTML and script shows as
//! text; the exported rankings validate and train a reward model, whose curves the runs page draws.
//! With `STUDIO_SCREENSHOTS=DIR` it also saves the pages as PNGs there.

mod common;

use anyhow::{ensure, Result};
use common::cdp::{Browser, Tab};
use common::{Server, XSS};
use rlhf_data::{read_records, validate_table, Demonstration, Kind, Ranking};
use rlhf_studio::journal::{Journal, Label, Verdict};

/// Responses in the embedded task's words, three per prompt; the first prompt's last is [`XSS`].
fn samples(path: &std::path::Path) -> Result<()> {
    let answers =
        [" Sure! The river is calm today.", " The river is cold.", " I think the river is lovely, thank you!"];
    let mut rows = Vec::new();
    for p in 0..4 {
        for (r, answer) in answers.iter().enumerate() {
            let response = if p == 0 && r == 2 {
                XSS.to_string()
            } else {
                answer.replace("river", ["river", "garden", "market", "forest"][p])
            };
            rows.push(Demonstration {
                id: format!("p{p}"),
                prompt: format!("Tell me about the place number {p}."),
                response,
                prompt_messages: None,
            });
        }
    }
    rlhf_data::write_records(path, &rows)?;
    Ok(())
}

/// Ranks the item on screen by keyboard: the shown responses from last to first, the last two tied
/// when `tie`; then Enter, and waits for the next item (or the end).
fn rank_by_keyboard(browser: &mut Browser, tab: &Tab, tie: bool) -> Result<String> {
    let item =
        browser.eval(tab, "document.getElementById('task').dataset.item")?.as_str().unwrap_or_default().to_string();
    browser.press(tab, "3", false)?;
    browser.press(tab, "2", false)?;
    browser.press(tab, "1", tie)?;
    browser.press(tab, "Enter", false)?;
    browser.wait_for(
        tab,
        &format!("document.getElementById('done').hidden === false || document.getElementById('task').dataset.item !== '{item}'"),
    )?;
    Ok(item)
}

/// Checks that a response with markup shows as text (the exact string, no element made from it, no
/// script run); true if it is on screen.
fn check_markup_is_text(browser: &mut Browser, tab: &Tab) -> Result<bool> {
    let shown = browser.eval(tab, "[...document.querySelectorAll('.response')].map(e => e.textContent)")?;
    let on_screen = shown.as_array().is_some_and(|texts| texts.iter().any(|t| t == XSS));
    if on_screen {
        let made =
            browser.eval(tab, "document.querySelectorAll('#responses script, #responses img, #responses b').length")?;
        ensure!(made == 0, "{made} elements were made from a response");
    }
    ensure!(browser.eval(tab, "window.pwned === undefined")? == true, "a response's script ran");
    Ok(on_screen)
}

#[test]
fn an_annotator_ranks_by_keyboard_through_a_kill_and_the_labels_train_a_reward_model() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let table = tmp.path().join("samples.parquet");
    samples(&table)?;
    let guidelines = tmp.path().join("guidelines.md");
    std::fs::write(&guidelines, "# How to rank\n\nBest first: polite, on topic, ends properly.\n")?;
    let dir = tmp.path().join("studio");
    let setup =
        ["--samples", table.to_str().unwrap(), "--annotators", "ada", "--guidelines", guidelines.to_str().unwrap()];
    let server = Server::start(&dir, &setup)?;

    let mut browser = Browser::launch()?;
    let tab = browser.open("about:blank")?;
    browser.navigate(&tab, &format!("http://{}/login/{}", server.address, server.token("ada")))?;
    browser.wait_for(&tab, "document.getElementById('task').dataset.item !== undefined")?;
    ensure!(browser.eval(&tab, "document.getElementById('guidelines').textContent.includes('Best first')")? == true);
    if let Ok(shots) = std::env::var("STUDIO_SCREENSHOTS") {
        browser.press(&tab, "2", false)?;
        browser.screenshot(&tab, &std::path::Path::new(&shots).join("studio-ranking.png"))?;
        browser.press(&tab, "Backspace", false)?;
    }
    let (mut ranked, mut markup_seen) = (Vec::new(), false);
    for tie in [false, true] {
        markup_seen |= check_markup_is_text(&mut browser, &tab)?;
        ranked.push(rank_by_keyboard(&mut browser, &tab, tie)?);
    }
    ensure!(browser.eval(&tab, "document.getElementById('progress').textContent")? == "2 / 4 labelled");

    // SIGKILL mid-session; the same command starts it again (on another port: sign in there).
    server.kill()?;
    let labels = Journal::<Label>::read(&dir.join("journal.jsonl"))?;
    ensure!(
        labels.iter().map(|l| l.item.clone()).collect::<Vec<_>>() == ranked,
        "acknowledged labels lost: {labels:?}"
    );
    ensure!(
        matches!(&labels[1].verdict, Verdict::Ranked { levels } if { let mut l = levels.clone(); l.sort(); l == [0, 1, 1] })
    );
    let server = Server::start(&dir, &[])?;
    browser.navigate(&tab, &format!("http://{}/login/{}", server.address, server.token("ada")))?;
    browser.wait_for(&tab, "document.getElementById('progress').textContent === '2 / 4 labelled'")?;
    let next = browser.eval(&tab, "document.getElementById('task').dataset.item")?;
    ensure!(!ranked.iter().any(|item| next == item.as_str()), "{next} is shown again");
    for _ in 0..2 {
        markup_seen |= check_markup_is_text(&mut browser, &tab)?;
        ranked.push(rank_by_keyboard(&mut browser, &tab, false)?);
    }
    browser.wait_for(&tab, "document.getElementById('done').hidden === false")?;
    ranked.sort();
    ensure!(ranked == ["p0", "p1", "p2", "p3"] && markup_seen);
    drop(server);

    // The tables: the labels without ties as rankings, all of them as comparisons; a reward model
    // trains on the rankings.
    rlhf_studio::export(&dir)?;
    validate_table(dir.join("rankings.parquet"), Kind::Rankings)?;
    validate_table(dir.join("comparisons.parquet"), Kind::Comparisons)?;
    let rankings: Vec<Ranking> = read_records(dir.join("rankings.parquet"))?;
    ensure!(rankings.len() == 3 && rankings.iter().all(|r| r.annotator.as_deref() == Some("human:ada")));
    train_reward_model(tmp.path(), &dir.join("rankings.parquet"))?;

    // The runs page draws the reward model's training curves.
    let mut runs = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"));
    runs.args(["runs", "--runs"]).arg(tmp.path().join("run"));
    let server = Server::start_with(runs, None, &[])?;
    browser.navigate(&tab, &format!("http://{}/login/{}", server.address, server.token("viewer")))?;
    browser.wait_for(&tab, "[...document.querySelectorAll('#entries button')].some(b => b.textContent === 'rm')")?;
    browser
        .eval(&tab, "[...document.querySelectorAll('#entries button')].find(b => b.textContent === 'rm').click()")?;
    browser.wait_for(&tab, "document.querySelectorAll('.chart svg path').length > 3")?;
    ensure!(browser.eval(&tab, "document.getElementById('title').textContent")? == "rm");
    if let Ok(shots) = std::env::var("STUDIO_SCREENSHOTS") {
        browser.screenshot(&tab, &std::path::Path::new(&shots).join("studio-runs.png"))?;
    }
    Ok(())
}

#[test]
fn a_blind_study_is_voted_by_keyboard_and_names_no_policy() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut setup: Vec<String> = vec!["--annotators".into(), "ada".into()];
    for (name, answer) in [("sft", " The {} is nice."), ("ppo", " Sure! The {} is lovely, thank you.")] {
        let rows: Vec<Demonstration> = ["garden", "river", "market"]
            .iter()
            .map(|topic| Demonstration {
                id: (*topic).into(),
                prompt: format!("Tell me about the {topic}."),
                response: answer.replace("{}", topic),
                prompt_messages: None,
            })
            .collect();
        let path = tmp.path().join(format!("responses_{name}.parquet"));
        rlhf_data::write_records(&path, &rows)?;
        setup.extend(["--policy".into(), format!("{name}={}", path.display())]);
    }
    let dir = tmp.path().join("study");
    let mut study = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"));
    study.arg("study");
    let server = Server::start_with(study, Some(&dir), &setup.iter().map(String::as_str).collect::<Vec<_>>())?;
    let mut browser = Browser::launch()?;
    let tab = browser.open("about:blank")?;
    browser.navigate(&tab, &format!("http://{}/login/{}", server.address, server.token("ada")))?;
    browser.wait_for(&tab, "document.getElementById('task').dataset.item !== undefined")?;
    let page = browser.eval(&tab, "document.body.innerText")?;
    ensure!(!page.as_str().unwrap_or_default().contains("ppo") && !page.as_str().unwrap_or_default().contains("sft"));
    if let Ok(shots) = std::env::var("STUDIO_SCREENSHOTS") {
        browser.screenshot(&tab, &std::path::Path::new(&shots).join("studio-study.png"))?;
    }
    let mut voted = Vec::new();
    for key in ["1", "t", "b"] {
        let item = browser.eval(&tab, "document.getElementById('task').dataset.item")?;
        browser.press(&tab, key, false)?;
        browser.wait_for(
            &tab,
            &format!("document.getElementById('done').hidden === false || document.getElementById('task').dataset.item !== {item}"),
        )?;
        voted.push(item);
    }
    browser.wait_for(&tab, "document.getElementById('done').hidden === false")?;
    let labels = Journal::<Label>::read(&dir.join("journal.jsonl"))?;
    let verdicts: Vec<&Verdict> = labels.iter().map(|l| &l.verdict).collect();
    ensure!(
        matches!(verdicts[..], [Verdict::Ranked { .. }, Verdict::Ranked { levels }, Verdict::BothBad] if levels == &[0, 0]),
        "{verdicts:?}"
    );
    Ok(())
}

#[test]
fn the_chat_page_streams_a_real_model_as_text() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = rlhf_train::testing::smollm2(&tmp.path().join("smollm2"))?;
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_rlhf-studio"));
    serve.args(["serve", "--model"]).arg(&model);
    let server = Server::start_with(serve, None, &[])?;
    let mut browser = Browser::launch()?;
    let tab = browser.open("about:blank")?;
    browser.navigate(&tab, &format!("http://{}/login/{}", server.address, server.token("viewer")))?;
    browser.wait_for(&tab, "document.getElementById('model').textContent === 'smollm2'")?;
    ensure!(browser.eval(&tab, "document.getElementById('single-turn').hidden")? == true, "it has a chat template");
    let say = |browser: &mut Browser, text: &str| -> Result<()> {
        browser.eval(
            &tab,
            &format!(
                "document.getElementById('input').focus(); document.getElementById('input').value = {}",
                serde_json::to_string(text)?
            ),
        )?;
        browser.press(&tab, "Enter", false)?;
        // Generation on 2 cores shared with other tests can take a while.
        let idle = "document.getElementById('send').disabled === false";
        browser.wait_for_up_to(&tab, idle, std::time::Duration::from_secs(180))
    };
    let answers = "[...document.querySelectorAll('.message.assistant .text')].map(e => e.textContent)";
    browser.eval(&tab, "document.getElementById('temperature').value = '0'")?;
    say(&mut browser, "What is the capital of France?")?;
    let shown = browser.eval(&tab, answers)?;
    let status = browser.eval(&tab, "document.getElementById('status').textContent")?;
    ensure!(shown == serde_json::json!(["The capital of France is Paris."]), "shown {shown}, status {status}");

    // A second turn with each token's probability shown (hover: the alternatives).
    browser.eval(&tab, "document.getElementById('show-logprobs').checked = true")?;
    browser.eval(&tab, "document.getElementById('temperature').value = '0.7'")?;
    browser.eval(&tab, "document.getElementById('max-tokens').value = '32'")?;
    say(&mut browser, "Name three colours of the rainbow.")?;
    let tokens = browser.eval(&tab, "document.querySelectorAll('.message.assistant:last-child .tok').length")?;
    ensure!(tokens.as_u64().is_some_and(|n| n > 3), "no token spans: {tokens}");
    let title = browser.eval(&tab, "document.querySelector('.message.assistant:last-child .tok').title")?;
    ensure!(title.as_str().is_some_and(|t| t.starts_with("p = ") && t.lines().count() == 6), "{title}");
    if let Ok(shots) = std::env::var("STUDIO_SCREENSHOTS") {
        browser.screenshot(&tab, &std::path::Path::new(&shots).join("studio-chat.png"))?;
    }

    // Markup the user writes, and whatever the model answers, stays text.
    browser.eval(&tab, "document.getElementById('max-tokens').value = '8'")?;
    say(&mut browser, XSS)?;
    let users = browser.eval(&tab, "[...document.querySelectorAll('.message.user .text')].map(e => e.textContent)")?;
    ensure!(users[2] == XSS, "{users}");
    ensure!(
        browser.eval(&tab, "document.querySelectorAll('#messages script, #messages img, #messages b').length")? == 0
    );
    ensure!(browser.eval(&tab, "window.pwned === undefined")? == true, "a message's script ran");
    Ok(())
}

fn train_reward_model(tmp: &std::path::Path, rankings: &std::path::Path) -> Result<()> {
    use rlhf_train::testing::{cpu, fast_train, save_random_policy, task_tokenizer, tiny_llama, trained};
    let tokenizer = task_tokenizer(0, 320);
    let policy = save_random_policy(&tmp.join("policy"), tiny_llama(&tokenizer, 2, 128), &tokenizer, 5);
    let mut config = rlhf_reward::RewardConfig::default();
    config.model.policy = policy;
    config.data.comparisons = String::new();
    config.data.rankings = rankings.display().to_string();
    config.data.heldout_fraction = 0.0;
    config.train = rlhf_train::TrainConfig { max_steps: 3, ..fast_train(config.train.clone()) };
    let summary = trained(rlhf_reward::stage::run(&config, &tmp.join("run"), &cpu())?);
    ensure!(tmp.join("run/rm/final/model.safetensors").is_file(), "{summary:?}");
    Ok(())
}
