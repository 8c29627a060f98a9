"""What the peer benchmark scripts share: the word-level tokenizer that maps token "t<id>" to id
<id> (so TRL trains on exactly our ids), the per-case summary lines, and the JSON report next to the
Rust benches' (`$RLHF_BENCH_DIR`, default `<workspace>/target/bench`)."""

import json
import os
import resource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench_model(name, **token_ids):
    """The benchmark model `benches/models/<name>.json` (the Rust bench reads the same file), with
    the token ids the case uses."""
    from transformers import LlamaConfig
    cfg = LlamaConfig.from_json_file(os.path.join(ROOT, "benches", "models", f"{name}.json"))
    for key, value in token_ids.items():
        setattr(cfg, key, value)
    return cfg


def bench_dir():
    return os.environ.get("RLHF_BENCH_DIR", os.path.join(ROOT, "target", "bench"))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def word_level_tokenizer(vocab_size, eos, pad):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t2"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=f"t{eos}", pad_token=f"t{pad}", unk_token="t2")


def summarize_pair_cases(cases, warmup, tokens_per_pair):
    """Adds tokens/s to each timed case and prints one line per case (or why it was skipped)."""
    for name, case in cases.items():
        if "train_pairs_per_s" in case:
            case["train_tokens_per_s"] = case["train_pairs_per_s"] * tokens_per_pair
            print(f"  {name}: {case['train_pairs_per_s']:.2f} pairs/s (median step after {warmup} warm-up), "
                  f"{case['train_cpu_s']:.2f} s CPU")
        else:
            print(f"  {name}: {case['skipped']}")


def write_report(name, report):
    """Writes `<bench dir>/<name>.json`."""
    out_dir = bench_dir()
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def read_ours(name):
    """The Rust bench's report `<bench dir>/<name>.json`, or None when it has not run."""
    path = os.path.join(bench_dir(), f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
