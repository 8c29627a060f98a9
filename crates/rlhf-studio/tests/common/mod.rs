//! What the studio's tests share: a samples table, a tiny policy, the server binary started on a free port (its
//! address and personal links read from its first lines), and a plain HTTP/1.1 client.

#![allow(dead_code)]

pub mod cdp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use rlhf_data::{write_records, Demonstration};

/// A response that would run script if the page rendered it as HTML.
pub const XSS: &str = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\"><b>bold?</b>";

/// `prompts` prompts with three responses each; the first prompt's last response is [`XSS`].
pub fn samples(path: &Path, prompts: usize) -> Result<()> {
    let mut rows = Vec::new();
    for p in 0..prompts {
        for r in 0..3 {
            let response = if p == 0 && r == 2 { XSS.to_string() } else { format!("answer {r} to question {p}") };
            rows.push(Demonstration {
                id: format!("p{p}"),
                prompt: format!("question {p}?"),
                response,
                prompt_messages: None,
            });
        }
    }
    write_records(path, &rows)?;
    Ok(())
}

/// A tiny random policy (one layer, the embedded task's tokenizer) with `max_positions` positions, in `dir`.
pub fn tiny_policy(dir: &Path, max_positions: i64) -> std::path::PathBuf {
    use rlhf_train::testing::{save_random_policy, task_tokenizer, tiny_llama};
    let tokenizer = task_tokenizer(0, 400);
    save_random_policy(dir, tiny_llama(&tokenizer, 1, max_positions), &tokenizer, 3)
}

/// A running `rlhf-studio label`.
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// (annotator, token) in the studio's order; `viewer` for a page's link, `api-key` for the API's.
    pub links: Vec<(String, String)>,
}

impl Server {
    /// Starts the ranking studio in `dir` with `args` on a free loopback port.
    pub fn start(dir: &Path, args: &[&str]) -> Result<Server> {
        let mut label = Command::new(env!("CARGO_BIN_EXE_rlhf-studio"));
        label.arg("label");
        Server::start_with(label, Some(dir), args)
    }

    /// Starts `command` (the binary and its subcommand) on `dir` (a studio's) with `args` on a free
    /// loopback port.
    pub fn start_with(mut command: Command, dir: Option<&Path>, args: &[&str]) -> Result<Server> {
        command.args(["--bind", "127.0.0.1:0"]);
        if let Some(dir) = dir {
            command.arg("--dir").arg(dir);
        }
        let mut child = command.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let first = lines.next().context("the studio printed nothing")??;
        let Some(address) = first.split("http://").nth(1) else { bail!("unexpected first line: {first}") };
        let mut links = Vec::new();
        for line in lines.by_ref() {
            let line = line?;
            if line.starts_with("rlhf-studio: ready") {
                break;
            }
            if let Some(info) = line.strip_prefix("rlhf-studio: ") {
                // A page's personal link (runs, chat), and the API's key.
                if let Some(token) = info.split("/login/").nth(1).filter(|_| info.contains(" page: http://")) {
                    links.push(("viewer".to_string(), token.to_string()));
                }
                if let Some(key) = info.split("(api key: ").nth(1) {
                    links.push(("api-key".to_string(), key.trim_end_matches(')').to_string()));
                }
                continue;
            }
            let Some((name, rest)) = line.trim().split_once(": http://") else { bail!("unexpected line: {line}") };
            let token = rest.split("/login/").nth(1).context("no token")?.split_whitespace().next().context("token")?;
            links.push((name.to_string(), token.to_string()));
        }
        // Keep reading stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, address: address.to_string(), links })
    }

    pub fn token(&self, name: &str) -> &str {
        &self.links.iter().find(|(n, _)| n == name).expect("annotator").1
    }

    /// Kills the server with SIGKILL.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reply: status, headers (lower-case names) and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

/// One request over a fresh connection; `headers` as (name, value).
pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Result<Reply> {
    let mut stream = TcpStream::connect(address)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let mut lines = head.lines();
    let status = lines.next().context("no status")?.split_whitespace().nth(1).context("status")?.parse()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    Ok(Reply { status, headers, body: body.to_string() })
}

/// An annotator's session: their cookie and CSRF token.
pub struct Session {
    pub address: String,
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    /// Signs in with `token` (following the personal link) and reads the CSRF token off the page.
    pub fn sign_in(address: &str, token: &str) -> Result<Session> {
        let login = request(address, "GET", &format!("/login/{token}"), &[], "")?;
        anyhow::ensure!(login.status == 303, "login: {}", login.status);
        let cookie = login.header("set-cookie").context("no cookie")?.split(';').next().context("cookie")?.to_string();
        let page = request(address, "GET", "/", &[("cookie", &cookie)], "")?;
        anyhow::ensure!(page.status == 200, "page: {}", page.status);
        let csrf = page
            .body
            .split("name=\"csrf\" content=\"")
            .nth(1)
            .context("no csrf meta")?
            .split('"')
            .next()
            .context("csrf")?;
        Ok(Session { address: address.to_string(), cookie, csrf: csrf.to_string() })
    }

    pub fn get(&self, path: &str) -> Result<Reply> {
        request(&self.address, "GET", path, &[("cookie", &self.cookie)], "")
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<Reply> {
        let body = body.to_string();
        request(
            &self.address,
            "POST",
            path,
            &[("cookie", &self.cookie), ("x-csrf-token", &self.csrf), ("content-type", "application/json")],
            &body,
        )
    }
}
