//! A studio directory and the labelling state the server keeps in memory.
//!
//! A studio is a ranking task (a samples table's K responses per prompt, best first) or a blind
//! study (two policies' responses per prompt: A, B, tie or both bad; which policy wrote which stays
//! hidden until [`crate::results`] closes the study).
//!
//! `<dir>/` holds `studio.json` (the annotators with their secret tokens, the overlap and the seed;
//! readable by its owner only), `items.json` (the items, copied from the inputs once),
//! `guidelines.md`, `journal.jsonl` (every label, [`crate::journal`]), with live sampling
//! `live.jsonl` (the items sampled since, [`crate::live`]), and the tables
//! [`crate::export`] writes from the journal. `studio.json` is written last, so its presence
//! means the directory is set up; `.lock` makes one server at a time its writer.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::assign::{display_order, is_assigned, queue};
use crate::items::{items_from_samples, study_items, Item};
use crate::journal::{Journal, Label, Verdict};
use crate::live::{Live, LiveBatch, LIVE_FILE};
use crate::{Error, Result};

const SPEC_FILE: &str = "studio.json";
const ITEMS_FILE: &str = "items.json";
const GUIDELINES_FILE: &str = "guidelines.md";
const JOURNAL_FILE: &str = "journal.jsonl";
const LOCK_FILE: &str = ".lock";
/// Written when a study's results are: the study takes no more votes.
pub const CLOSED_FILE: &str = "closed";
/// The longest rationale kept, in characters.
pub const MAX_RATIONALE_CHARS: usize = 4000;

/// What a new studio is made from (a directory already set up needs none of it).
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// The samples table (`rlhf-eval generate` output) of a ranking task.
    pub samples: Option<PathBuf>,
    /// A study's policies: (name, responses table).
    pub policies: Vec<(String, PathBuf)>,
    /// Annotator names (`[a-z0-9_-]`, at most 32 characters each).
    pub annotators: Vec<String>,
    /// How many annotators label each item.
    pub overlap: usize,
    pub seed: u64,
    /// A markdown file shown beside every item.
    pub guidelines: Option<PathBuf>,
    /// Refill the ranking queue from a policy ([`crate::live`]).
    pub live: Option<Live>,
}

/// `studio.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub kind: StudioKind,
    /// Where the items came from: the samples table, or the first policy's table.
    pub samples: PathBuf,
    /// A study's policies, in the order given.
    #[serde(default)]
    pub policies: Vec<String>,
    pub annotators: Vec<Annotator>,
    pub overlap: usize,
    pub seed: u64,
    /// Live sampling's settings, when the queue refills from a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Live>,
}

/// What the annotators do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudioKind {
    /// Rank each prompt's responses, best first.
    Ranking,
    /// Vote A, B, tie or both bad on two policies' responses.
    Study,
}

/// An annotator and their secrets: `token` is their personal link, `csrf` guards their posts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotator {
    pub name: String,
    pub token: String,
    pub csrf: String,
}

/// The tag annotator `name`'s labels carry in exported tables.
pub fn human_tag(name: &str) -> String {
    format!("human:{name}")
}

/// What an annotator sent for an item: the shown responses' places (slots) grouped best first
/// (a group of several is a tie), or a skip.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    pub item: String,
    #[serde(default)]
    pub ranking: Vec<Vec<usize>>,
    #[serde(default)]
    pub skip: bool,
    /// A study's "both bad" vote.
    #[serde(default)]
    pub both_bad: bool,
    #[serde(default)]
    pub rationale: String,
}

/// Why a submission was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no item `{0}`")]
    UnknownItem(String),
    #[error("item `{0}` is not one of yours")]
    NotYours(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] Error),
}

/// The files of a studio directory, read without taking its lock (what `export` and `results`
/// need).
pub struct Files {
    pub spec: Spec,
    pub items: Vec<Item>,
    pub labels: Vec<Label>,
    index: HashMap<String, usize>,
}

impl Files {
    pub fn new(spec: Spec, items: Vec<Item>, labels: Vec<Label>) -> Files {
        let index = index_by_id(&items);
        Files { spec, items, labels, index }
    }

    pub fn read(dir: &Path) -> Result<Files> {
        let stored = read_setup(dir)?;
        Ok(Files::new(stored.spec, stored.items, Journal::read(&dir.join(JOURNAL_FILE))?))
    }

    /// The item a label names, with its index; a label naming no item is a damaged journal.
    pub fn item_of(&self, label: &Label) -> Result<(usize, &Item)> {
        let index = *self.index.get(&label.item).ok_or_else(|| {
            Error::input(JOURNAL_FILE, format!("a label names item `{}`, which the studio lacks", label.item))
        })?;
        Ok((index, &self.items[index]))
    }
}

/// What a studio directory holds besides its labels.
struct Stored {
    spec: Spec,
    /// `items.json`'s, then every live batch's.
    items: Vec<Item>,
    /// How many came from `items.json`.
    base: usize,
    /// The live prompt cursor after the last batch.
    cursor: usize,
}

/// `studio.json`, `items.json` and the live batches.
fn read_setup(dir: &Path) -> Result<Stored> {
    let spec_path = dir.join(SPEC_FILE);
    if !spec_path.is_file() {
        return Err(Error::input(
            dir,
            "is not a studio directory (no studio.json); start `rlhf-studio label` in it first",
        ));
    }
    let spec: Spec = read_json(&spec_path)?;
    let mut items: Vec<Item> = read_json(&dir.join(ITEMS_FILE))?;
    let base = items.len();
    let mut cursor = 0;
    if spec.live.is_some() {
        for batch in Journal::<LiveBatch>::read(&dir.join(LIVE_FILE))? {
            cursor = batch.next_prompt;
            items.extend(batch.items);
        }
    }
    Ok(Stored { spec, items, base, cursor })
}

/// Each item's index by its id.
fn index_by_id(items: &[Item]) -> HashMap<String, usize> {
    items.iter().enumerate().map(|(i, item)| (item.id.clone(), i)).collect()
}

/// An open studio: its files, the journal open for appending, and which (annotator, item) pairs
/// are labelled.
pub struct Studio {
    pub dir: PathBuf,
    pub spec: Spec,
    pub items: Vec<Item>,
    pub guidelines: String,
    journal: Journal<Label>,
    /// Live sampling's batches, open for appending (live studios only).
    live_journal: Option<Journal<LiveBatch>>,
    /// The live prompt cursor: where the next refill starts.
    pub live_cursor: usize,
    index: HashMap<String, usize>,
    labelled: HashSet<(usize, usize)>,
    queues: Vec<Vec<usize>>,
    _lock: File,
}

impl Studio {
    /// Opens the studio in `dir`, setting it up from `setup` if it is new. A directory already set
    /// up keeps its items and annotators: a `setup` naming other samples or annotators is an error.
    pub fn open(dir: &Path, setup: &Setup) -> Result<Studio> {
        // A new studio's inputs are checked before anything is written.
        let new = (!dir.join(SPEC_FILE).is_file()).then(|| prepare(dir, setup)).transpose()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
        let lock = lock(dir)?;
        if let Some(new) = new.filter(|_| !dir.join(SPEC_FILE).is_file()) {
            new.write(dir)?;
        }
        let Stored { spec, items, base, cursor } = read_setup(dir)?;
        // Reading skipped a batch torn by a kill (never shown); opening for appending cuts it off.
        let live_journal = match spec.live {
            Some(_) => Some(Journal::<LiveBatch>::open(&dir.join(LIVE_FILE))?.0),
            None => None,
        };
        check_same_setup(dir, &spec, setup)?;
        let guidelines = std::fs::read_to_string(dir.join(GUIDELINES_FILE)).unwrap_or_default();
        if dir.join(CLOSED_FILE).exists() {
            return Err(Error::input(
                dir,
                "this study is closed (its results are written); start a new one in another directory",
            ));
        }
        let (journal, labels) = Journal::open(&dir.join(JOURNAL_FILE))?;
        let n = spec.annotators.len();
        // Set-up items in each annotator's shuffled order, then live ones as they were sampled.
        let queues = spec
            .annotators
            .iter()
            .enumerate()
            .map(|(a, annotator)| {
                let mut mine = queue(spec.seed, &annotator.name, a, n, spec.overlap, base);
                mine.extend((base..items.len()).filter(|&i| is_assigned(i, a, n, spec.overlap)));
                mine
            })
            .collect();
        let index = index_by_id(&items);
        let mut studio = Studio {
            dir: dir.to_path_buf(),
            spec,
            items,
            guidelines,
            journal,
            live_journal,
            live_cursor: cursor,
            index,
            labelled: HashSet::new(),
            queues,
            _lock: lock,
        };
        for label in labels {
            let annotator = studio.annotator_named(&label.annotator);
            let item = studio.item_index(&label.item);
            let (Some(annotator), Some(item)) = (annotator, item) else {
                return Err(Error::input(
                    dir.join(JOURNAL_FILE),
                    format!(
                        "a label of `{}` on `{}`: no such annotator or item in this studio",
                        label.annotator, label.item
                    ),
                ));
            };
            studio.labelled.insert((annotator, item));
        }
        Ok(studio)
    }

    /// The annotator whose personal token is `token`.
    pub fn annotator_by_token(&self, token: &str) -> Option<usize> {
        self.spec.annotators.iter().position(|a| constant_time_eq(a.token.as_bytes(), token.as_bytes()))
    }

    fn annotator_named(&self, name: &str) -> Option<usize> {
        self.spec.annotators.iter().position(|a| a.name == name)
    }

    fn item_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The next item annotator `annotator` has not labelled, in their order.
    pub fn next_item(&self, annotator: usize) -> Option<usize> {
        self.queues[annotator].iter().copied().find(|&item| !self.labelled.contains(&(annotator, item)))
    }

    /// (labelled, assigned) items of `annotator`.
    pub fn progress(&self, annotator: usize) -> (usize, usize) {
        let queue = &self.queues[annotator];
        (queue.iter().filter(|&&item| self.labelled.contains(&(annotator, item))).count(), queue.len())
    }

    /// The fewest items any annotator has left to label.
    pub fn fewest_left(&self) -> usize {
        (0..self.queues.len())
            .map(|a| {
                let (labelled, assigned) = self.progress(a);
                assigned - labelled
            })
            .min()
            .unwrap_or(0)
    }

    /// Keeps a live batch on disk, then adds its items to the queues of the annotators they are
    /// assigned to (after what those have).
    pub fn add_live_batch(&mut self, mut batch: LiveBatch) -> Result<()> {
        let journal = self.live_journal.as_mut().ok_or_else(|| Error::input(&self.dir, "is not a live studio"))?;
        batch.items.retain(|item| !self.index.contains_key(&item.id));
        journal.append(&batch)?;
        let n = self.spec.annotators.len();
        for item in batch.items {
            let i = self.items.len();
            self.index.insert(item.id.clone(), i);
            self.items.push(item);
            for (a, queue) in self.queues.iter_mut().enumerate() {
                if is_assigned(i, a, n, self.spec.overlap) {
                    queue.push(i);
                }
            }
        }
        self.live_cursor = batch.next_prompt;
        Ok(())
    }

    /// `order[slot]`: the response shown in place `slot` of `item` to `annotator`.
    pub fn display_order(&self, annotator: usize, item: usize) -> Vec<usize> {
        display_order(
            self.spec.seed,
            &self.spec.annotators[annotator].name,
            &self.items[item].id,
            self.items[item].responses.len(),
        )
    }

    /// Journals `submission` from `annotator` (on disk when this returns `Ok(true)`). A second
    /// label of the same item by the same annotator is not recorded again: `Ok(false)`.
    pub fn record(
        &mut self,
        annotator: usize,
        submission: Submission,
        time: String,
    ) -> std::result::Result<bool, Refused> {
        let item = self.item_index(&submission.item).ok_or_else(|| Refused::UnknownItem(submission.item.clone()))?;
        if !self.queues[annotator].contains(&item) {
            return Err(Refused::NotYours(submission.item));
        }
        if submission.rationale.chars().count() > MAX_RATIONALE_CHARS {
            return Err(Refused::Invalid(format!("the rationale is longer than {MAX_RATIONALE_CHARS} characters")));
        }
        let verdict = match (submission.skip, submission.both_bad) {
            (true, true) => return Err(Refused::Invalid("a vote is a skip or both bad, not both".into())),
            (true, false) | (false, true) if !submission.ranking.is_empty() => {
                return Err(Refused::Invalid("a skip or a both-bad vote carries no ranking".into()))
            }
            (true, false) => Verdict::Skipped,
            (false, true) if self.spec.kind == StudioKind::Study => Verdict::BothBad,
            (false, true) => return Err(Refused::Invalid("both bad is a study's vote; rank the responses".into())),
            (false, false) => {
                let order = self.display_order(annotator, item);
                let levels = levels(&submission.ranking, &order)?;
                if self.spec.kind == StudioKind::Ranking && submission.ranking.len() < 2 {
                    return Err(Refused::Invalid(
                        "a ranking that ties every response says nothing; skip the item instead".into(),
                    ));
                }
                Verdict::Ranked { levels }
            }
        };
        if self.labelled.contains(&(annotator, item)) {
            return Ok(false);
        }
        let label = Label {
            annotator: self.spec.annotators[annotator].name.clone(),
            item: submission.item,
            verdict,
            rationale: submission.rationale,
            time,
        };
        self.journal.append(&label).map_err(Error::from)?;
        self.labelled.insert((annotator, item));
        Ok(true)
    }
}

/// Takes the studio's lock (held while the file lives), or says that another process holds it.
pub(crate) fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "open", e))?;
    lock.try_lock().map_err(|_| Error::input(dir, "another rlhf-studio is serving this directory"))?;
    Ok(lock)
}

/// Turns slot groups (best first) into each response's place, checking that they hold every shown
/// slot exactly once.
fn levels(groups: &[Vec<usize>], order: &[usize]) -> std::result::Result<Vec<u32>, Refused> {
    let mut levels = vec![u32::MAX; order.len()];
    for (place, group) in groups.iter().enumerate() {
        if group.is_empty() {
            return Err(Refused::Invalid("an empty place in the ranking".into()));
        }
        for &slot in group {
            let response = *order.get(slot).ok_or_else(|| Refused::Invalid(format!("no response in place {slot}")))?;
            if levels[response] != u32::MAX {
                return Err(Refused::Invalid(format!("the response in place {slot} is ranked twice")));
            }
            levels[response] = place as u32;
        }
    }
    if levels.contains(&u32::MAX) {
        return Err(Refused::Invalid("every response must be ranked".into()));
    }
    Ok(levels)
}

/// A new studio's files, made from its set-up and not yet written.
struct NewStudio {
    spec: Spec,
    items: Vec<Item>,
    guidelines: String,
}

impl NewStudio {
    /// Writes the files, `studio.json` last (readable by its owner only: it holds the tokens).
    fn write(self, dir: &Path) -> Result<()> {
        write_json(&dir.join(ITEMS_FILE), &self.items)?;
        rlhf_data::atomic::write_atomically(&dir.join(GUIDELINES_FILE), self.guidelines.as_bytes())?;
        let spec_path = dir.join(SPEC_FILE);
        write_json(&spec_path, &self.spec)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&spec_path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&spec_path, "protect", e))
    }
}

fn prepare(dir: &Path, setup: &Setup) -> Result<NewStudio> {
    let study = !setup.policies.is_empty();
    let samples = match (&setup.samples, setup.policies.first(), &setup.live) {
        (Some(_), Some(_), _) => {
            return Err(Error::input(dir, "give --samples (ranking) or --policy (a study), not both"))
        }
        (_, Some(_), Some(_)) => {
            return Err(Error::input(dir, "live sampling (--prompts) refills a ranking studio, not a study"))
        }
        (Some(samples), None, _) => samples.as_path(),
        (None, Some((_, first)), None) => first.as_path(),
        (None, None, Some(live)) => live.prompts.as_path(),
        (None, None, None) => {
            return Err(Error::input(
                dir,
                "is a new studio: give --samples (a samples table, e.g. from `rlhf-eval generate`), or --prompts and --model to sample live",
            ))
        }
    };
    if setup.annotators.is_empty() {
        return Err(Error::input(dir, "is a new studio: give --annotators (names, comma-separated)"));
    }
    let mut seen = HashSet::new();
    for name in &setup.annotators {
        check_name(dir, "annotator", name, &mut seen)?;
    }
    let mut seen = HashSet::new();
    for (name, _) in &setup.policies {
        check_name(dir, "policy", name, &mut seen)?;
    }
    let guidelines = match &setup.guidelines {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?,
        None => String::new(),
    };
    let items = if study {
        let (items, identical) = study_items(&setup.policies)?;
        tracing::info!(items = items.len(), identical, "study items");
        items
    } else if setup.samples.is_some() {
        let (items, dropped) = items_from_samples(samples)?;
        tracing::info!(items = items.len(), single = dropped.single, duplicates = dropped.duplicates, "items");
        items
    } else {
        Vec::new()
    };
    let annotators = setup
        .annotators
        .iter()
        .map(|name| Ok(Annotator { name: name.clone(), token: secret()?, csrf: secret()? }))
        .collect::<Result<Vec<_>>>()?;
    let samples = std::path::absolute(samples).map_err(|e| Error::io(samples, "resolve", e))?;
    let spec = Spec {
        kind: if study { StudioKind::Study } else { StudioKind::Ranking },
        samples,
        policies: setup.policies.iter().map(|(name, _)| name.clone()).collect(),
        annotators,
        overlap: setup.overlap.max(1),
        seed: setup.seed,
        live: setup.live.clone(),
    };
    Ok(NewStudio { spec, items, guidelines })
}

fn check_name<'a>(dir: &Path, what: &str, name: &'a str, seen: &mut HashSet<&'a str>) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(Error::input(dir, format!("{what} name `{name}`: use 1 to 32 of a-z, 0-9, - and _")));
    }
    if !seen.insert(name) {
        return Err(Error::input(dir, format!("{what} `{name}` is named twice")));
    }
    Ok(())
}

fn check_same_setup(dir: &Path, spec: &Spec, setup: &Setup) -> Result<()> {
    if let Some(live) = &setup.live {
        if spec.live.as_ref().is_none_or(|kept| kept.prompts != live.prompts) {
            return Err(Error::input(
                dir,
                "was set up without live sampling from these prompts; drop --prompts or use a new directory",
            ));
        }
    }
    if let Some(samples) = setup.samples.as_ref().or(setup.policies.first().map(|(_, path)| path)) {
        let given = std::path::absolute(samples).map_err(|e| Error::io(samples, "resolve", e))?;
        if given != spec.samples {
            return Err(Error::input(
                dir,
                format!("was set up from {}; drop --samples or use a new directory", spec.samples.display()),
            ));
        }
    }
    let names: Vec<&str> = spec.annotators.iter().map(|a| a.name.as_str()).collect();
    if !setup.annotators.is_empty() && setup.annotators.iter().map(String::as_str).ne(names.iter().copied()) {
        return Err(Error::input(
            dir,
            format!("has the annotators {}; drop --annotators or use a new directory", names.join(",")),
        ));
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?;
    serde_json::from_str(&text).map_err(|e| Error::input(path, e.to_string()))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::input(path, e.to_string()))?;
    Ok(rlhf_data::atomic::write_atomically(path, &text)?)
}

/// 128 random bits from the operating system, in hex.
pub fn secret() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("/dev/urandom", "read", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_groups_become_places_of_the_original_responses() {
        // Shown order: slot 0 is response 2, slot 1 response 0, slot 2 response 1.
        let order = [2, 0, 1];
        assert_eq!(levels(&[vec![1], vec![0, 2]], &order).unwrap(), [0, 1, 1]);
        assert_eq!(levels(&[vec![0], vec![1], vec![2]], &order).unwrap(), [1, 2, 0]);
        assert_eq!(levels(&[vec![0, 1, 2]], &order).unwrap(), [0, 0, 0], "a full tie (a study's vote)");
        for bad in [
            vec![vec![0], vec![1]],
            vec![vec![0], vec![0], vec![1, 2]],
            vec![vec![5]],
            vec![vec![0], vec![], vec![1, 2]],
        ] {
            assert!(levels(&bad, &order).is_err(), "{bad:?}");
        }
    }
}
