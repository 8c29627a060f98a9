// rlhf-studio's ranking page. Every text from the server goes in with textContent, never as HTML.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const study = document.querySelector('meta[name="mode"]').content === "study";
document.body.classList.add(study ? "study" : "ranking");
const $ = (id) => document.getElementById(id);
let item = null;   // the item on screen: {item, prompt, responses}
let groups = [];   // the ranking so far: places, best first, each a list of slots (ties)
let busy = false;  // a request is in flight: keys wait

function status(text) { $("status").textContent = text; }

function placeOf(slot) { return groups.findIndex((group) => group.includes(slot)); }

function render() {
  const list = $("responses");
  list.replaceChildren();
  item.responses.forEach((text, slot) => {
    const li = document.createElement("li");
    li.dataset.slot = String(slot);
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = String(slot + 1);
    const body = document.createElement("span");
    body.className = "text response";
    body.textContent = text;
    const place = document.createElement("span");
    place.className = "place";
    const at = placeOf(slot);
    if (at >= 0) {
      li.classList.add("ranked");
      place.textContent = "#" + (at + 1) + (groups[at].length > 1 ? " (tie)" : "");
    }
    li.append(key, body, place);
    li.addEventListener("click", (event) => choose(slot, event.shiftKey));
    list.append(li);
  });
  $("ranking").textContent = groups.map((group) => group.map((slot) => slot + 1).join(" = ")).join("  >  ") || "(none yet)";
}

function choose(slot, tie) {
  if (busy || !item || slot >= item.responses.length || placeOf(slot) >= 0) return;
  if (study) { vote(slot === 0 ? [[0], [1]] : [[1], [0]]); return; }
  if (tie && groups.length > 0) groups[groups.length - 1].push(slot);
  else groups.push([slot]);
  render();
}

function undo() {
  if (busy || groups.length === 0) return;
  const last = groups[groups.length - 1];
  last.pop();
  if (last.length === 0) groups.pop();
  render();
}

async function call(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(body),
  };
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, options);
    if (response.status === 429 && attempt < 20) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      continue;
    }
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }
}

async function load() {
  busy = true;
  try {
    const next = await call("/api/next");
    $("progress").textContent = next.progress.labelled + " / " + next.progress.assigned + " labelled";
    if (next.waiting) {
      // Live sampling: the policy is writing the next items.
      item = null;
      $("task").hidden = true;
      $("done").hidden = true;
      status(next.error ? "Live sampling failed: " + next.error : "Sampling fresh responses from the policy…");
      setTimeout(load, 1000);
      return;
    }
    if (next.done) {
      item = null;
      $("task").hidden = true;
      $("done").hidden = false;
    } else {
      item = next;
      groups = [];
      $("rationale").value = "";
      $("prompt").textContent = next.prompt;
      $("task").hidden = false;
      $("done").hidden = true;
      $("task").dataset.item = next.item;
      render();
    }
    status("");
  } catch (error) {
    status("Could not load the next item: " + error.message);
  } finally {
    busy = false;
  }
}

async function submit(skip) {
  if (busy || !item) return;
  if (skip) { send({ skip: true }); return; }
  let ranking = groups.map((group) => group.slice());
  const left = item.responses.map((_, slot) => slot).filter((slot) => placeOf(slot) < 0);
  if (left.length === 1) ranking.push(left);  // the last one left takes the last place
  else if (left.length > 1) { status("Rank every response first (" + left.length + " left)"); return; }
  send({ ranking });
}

// A study's vote: a ranking of the two slots (one place for a tie), or both bad.
function vote(ranking) {
  if (busy || !item) return;
  send(ranking === "both_bad" ? { both_bad: true } : { ranking });
}

// Posts the label; the next item only shows once the server has it on disk.
async function send(verdict) {
  busy = true;
  status("saving…");
  try {
    await call("/api/label", Object.assign({ item: item.item, rationale: $("rationale").value }, verdict));
  } catch (error) {
    busy = false;
    status("Not saved: " + error.message);
    return;
  }
  busy = false;
  await load();
}

document.addEventListener("keydown", (event) => {
  if (event.target === $("rationale")) {
    if (event.key === "Escape") $("rationale").blur();
    return;
  }
  const digit = /^Digit([1-9])$/.exec(event.code);
  if (digit) { choose(Number(digit[1]) - 1, event.shiftKey); event.preventDefault(); }
  else if (study && event.key === "t") { vote([[0, 1]]); event.preventDefault(); }
  else if (study && event.key === "b") { vote("both_bad"); event.preventDefault(); }
  else if (event.key === "Backspace") { undo(); event.preventDefault(); }
  else if (event.key === "Enter" && !study) { submit(false); event.preventDefault(); }
  else if (event.key === "s") { submit(true); event.preventDefault(); }
  else if (event.key === "r") { $("rationale").focus(); event.preventDefault(); }
});
$("submit").addEventListener("click", () => submit(false));
$("skip").addEventListener("click", () => submit(true));
$("vote-first").addEventListener("click", () => vote([[0], [1]]));
$("vote-second").addEventListener("click", () => vote([[1], [0]]));
$("vote-tie").addEventListener("click", () => vote([[0, 1]]));
$("vote-bad").addEventListener("click", () => vote("both_bad"));

call("/api/guidelines").then((data) => { $("guidelines").textContent = data.text || "(no guidelines)"; });
load();
