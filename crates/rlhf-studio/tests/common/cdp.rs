//! Headless Chromium driven over the Chrome DevTools Protocol on a pipe (`--remote-debugging-pipe`:
//! JSON messages ended by a NUL byte, commands on the browser's fd 3, replies and events on its fd
//! 4), so no WebSocket client is needed. Just enough for the tests: open a page, evaluate script,
//! press keys, take a screenshot.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// The Chromium binary: `$CHROMIUM`, else `chromium` (Debian's package) on the `PATH`.
fn chromium() -> Result<String> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Ok(path);
    }
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("chromium").is_file()))
        .unwrap_or(false);
    if !found {
        bail!("the browser tests need Chromium: `apt-get install chromium` (or set CHROMIUM); `cargo xtask setup` installs it");
    }
    Ok("chromium".into())
}

pub struct Browser {
    child: Child,
    commands: File,
    replies: BufReader<File>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// One tab, attached in flat mode.
pub struct Tab {
    session: String,
}

fn pipe() -> Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok((fds[0], fds[1]))
}

impl Browser {
    pub fn launch() -> Result<Browser> {
        let profile = tempfile::tempdir()?;
        let (browser_reads, we_write) = pipe()?;
        let (we_read, browser_writes) = pipe()?;
        let mut command = Command::new(chromium()?);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--window-size=1280,860",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec; dup2 clears CLOEXEC on
        // the copies, so the browser keeps exactly fds 3 and 4.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(browser_reads, 3) < 0 || libc::dup2(browser_writes, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().context("starting chromium")?;
        // SAFETY: the fds are ours, open, and each is wrapped once.
        let (commands, replies) = unsafe {
            libc::close(browser_reads);
            libc::close(browser_writes);
            (File::from_raw_fd(we_write), File::from_raw_fd(we_read))
        };
        Ok(Browser { child, commands, replies: BufReader::new(replies), next_id: 0, _profile: profile })
    }

    /// Sends `method` (to `tab`, or to the browser) and waits for its reply's result.
    pub fn call(&mut self, tab: Option<&Tab>, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(tab) = tab {
            message["sessionId"] = json!(tab.session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.commands.write_all(&bytes)?;
        loop {
            let mut raw = Vec::new();
            if self.replies.read_until(0, &mut raw)? == 0 {
                bail!("chromium closed the pipe");
            }
            raw.pop();
            let reply: Value = serde_json::from_slice(&raw)?;
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    bail!("{method}: {error}");
                }
                return Ok(reply["result"].clone());
            }
        }
    }

    /// A new tab showing `url`.
    pub fn open(&mut self, url: &str) -> Result<Tab> {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }))?;
        let attached =
            self.call(None, "Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }))?;
        let tab = Tab { session: attached["sessionId"].as_str().context("no session")?.to_string() };
        self.call(Some(&tab), "Page.enable", json!({}))?;
        Ok(tab)
    }

    pub fn navigate(&mut self, tab: &Tab, url: &str) -> Result<()> {
        self.call(Some(tab), "Page.navigate", json!({ "url": url }))?;
        Ok(())
    }

    /// The value of `expression` in the page (promises awaited).
    pub fn eval(&mut self, tab: &Tab, expression: &str) -> Result<Value> {
        let result = self.call(
            Some(tab),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits up to 10 s for `expression` to be true.
    pub fn wait_for(&mut self, tab: &Tab, expression: &str) -> Result<()> {
        self.wait_for_up_to(tab, expression, Duration::from_secs(10))
    }

    /// Waits up to `timeout` for `expression` to be true (a model generating on a loaded machine).
    pub fn wait_for_up_to(&mut self, tab: &Tab, expression: &str, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.eval(tab, expression).unwrap_or(Value::Null) == Value::Bool(true) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("timed out waiting for `{expression}` after {timeout:?}")
    }

    /// Presses and releases a key: `key` as the DOM names it (`"1"`, `"Enter"`, `"s"`), with Shift held
    /// if `shift`.
    pub fn press(&mut self, tab: &Tab, key: &str, shift: bool) -> Result<()> {
        let (code, virtual_code) = match key {
            "Enter" => ("Enter".to_string(), 13),
            "Backspace" => ("Backspace".to_string(), 8),
            digit if digit.len() == 1 && digit.as_bytes()[0].is_ascii_digit() => {
                (format!("Digit{digit}"), digit.as_bytes()[0] as i64)
            }
            letter if letter.len() == 1 => {
                (format!("Key{}", letter.to_uppercase()), letter.to_uppercase().as_bytes()[0] as i64)
            }
            other => bail!("no key code for {other}"),
        };
        let modifiers = if shift { 8 } else { 0 };
        for kind in ["rawKeyDown", "keyUp"] {
            self.call(
                Some(tab),
                "Input.dispatchKeyEvent",
                json!({ "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": virtual_code, "modifiers": modifiers }),
            )?;
        }
        Ok(())
    }

    /// Writes a PNG of what the tab shows.
    pub fn screenshot(&mut self, tab: &Tab, path: &Path) -> Result<()> {
        use base64::Engine;
        let shot = self.call(Some(tab), "Page.captureScreenshot", json!({ "format": "png" }))?;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().context("no data")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
