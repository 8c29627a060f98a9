#!/usr/bin/env python3
"""Peer benchmark: DPO training on the workload of `crates/rlhf-dpo/benches/dpo.rs`, in PyTorch and TRL.

Same ~10M-parameter Llama config (random weights, float32, CPU), 96 random pairs (prompt 64 tokens,
chosen and rejected 64 tokens each, ending with eos), micro-batches of 8 pairs, sigmoid loss (beta 0.1),
AdamW (lr 1e-5, no weight decay), gradient clipping at 1.0, reference log-probs precomputed once,
12 steps of which the first 2 are warm-up, same thread count (RLHF_BENCH_THREADS, default 2):

* `pytorch`: a plain loop — one forward over the 16 concatenated rows, summed response log-probs,
  the DPO loss against the precomputed reference, backward, clip, step;
* `trl`: TRL's `DPOTrainer` with `precompute_ref_log_probs=True` (a word-level tokenizer maps the
  token "t<id>" to id <id>, so it trains on exactly these ids).

Writes `$RLHF_BENCH_DIR/dpo_peers.json` (default `<workspace>/target/bench/`) and, when `dpo.json`
from the Rust bench is there, prints the rlhf-dpo / peer throughput ratios.

    pip install trl        # the TRL case is skipped (with a note) when it is missing
    python3 benches/peers/dpo_trl.py
"""

import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers
from peer_common import bench_model, peak_rss_mb, read_ours, summarize_pair_cases, word_level_tokenizer, write_report
from transformers import LlamaForCausalLM

PAIRS, BATCH, STEPS, WARMUP = 96, 8, 12, 2
PROMPT_LEN, RESPONSE_LEN = 64, 64
EOS, PAD, VOCAB = 1, 0, 8192
BETA, LR = 0.1, 1e-5


def make_model():
    torch.manual_seed(0)
    cfg = bench_model("llama-8k", bos_token_id=2, eos_token_id=EOS, pad_token_id=PAD)
    return LlamaForCausalLM(cfg)


def make_pairs():
    g = torch.Generator().manual_seed(0)
    ids = lambda n: torch.randint(3, VOCAB, (n,), generator=g).tolist()
    return [(ids(PROMPT_LEN), ids(RESPONSE_LEN - 1) + [EOS], ids(RESPONSE_LEN - 1) + [EOS]) for _ in range(PAIRS)]


def summed_logps(model, batch):
    """Summed response log-probs of [chosen rows; rejected rows] (all rows have the same length here)."""
    rows = [p + c for p, c, _ in batch] + [p + r for p, _, r in batch]
    ids = torch.tensor(rows)
    logits = model(ids).logits[:, PROMPT_LEN - 1:-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, PROMPT_LEN:, None])[..., 0].sum(-1)
    return logp[:len(batch)], logp[len(batch):]


def bench_pytorch(pairs):
    model = make_model()
    model.config.use_cache = False
    t0 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        ref = [summed_logps(model, pairs[i:i + 32]) for i in range(0, PAIRS, 32)]
    ref_c, ref_r = torch.cat([c for c, _ in ref]), torch.cat([r for _, r in ref])
    reference_s = time.perf_counter() - t0
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    times = []
    c0 = time.process_time()
    for step in range(STEPS):
        i = (step * BATCH) % PAIRS
        t = time.perf_counter()
        pc, pr = summed_logps(model, pairs[i:i + BATCH])
        h = (pc - pr) - (ref_c[i:i + BATCH] - ref_r[i:i + BATCH])
        loss = -F.logsigmoid(BETA * h).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - c0
    return {
        "train_pairs_per_s": BATCH / statistics.median(times[WARMUP:]),
        "train_wall_s": sum(times),
        "train_cpu_s": cpu,
        "train_pairs_per_cpu_s": BATCH * STEPS / cpu,
        "reference_pairs_per_s": PAIRS / reference_s,
    }


def bench_trl(pairs):
    try:
        import trl
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import DPOConfig, DPOTrainer
    except ImportError as e:
        return {"skipped": f"TRL not installed ({e}); pip install trl"}
    text = lambda ids: "".join(f" t{i}" for i in ids)
    data = Dataset.from_dict({
        "prompt": [text(p).lstrip() for p, _, _ in pairs],
        "chosen": [text(c) for _, c, _ in pairs],
        "rejected": [text(r) for _, _, r in pairs],
    })

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.started, self.cpu = [], None, 0.0

        def on_step_begin(self, args, state, control, **kw):
            self.started = (time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.started[0])
            self.cpu += time.process_time() - self.started[1]

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, per_device_train_batch_size=BATCH, max_steps=STEPS, learning_rate=LR,
                         weight_decay=0.0, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
                         beta=BETA, loss_type="sigmoid", precompute_ref_log_probs=True,
                         precompute_ref_batch_size=32, max_length=None, logging_steps=1, report_to="none",
                         save_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=0,
                         disable_dropout=True, bf16=False, fp16=False)
        trainer = DPOTrainer(model=make_model(), args=args, train_dataset=data,
                             processing_class=word_level_tokenizer(VOCAB, EOS, PAD), callbacks=[timer])
        t0 = time.perf_counter()
        trainer.train()
        total_s = time.perf_counter() - t0
        cpu = timer.cpu
    train_s = sum(timer.times)
    return {
        "trl_version": trl.__version__,
        "train_pairs_per_s": BATCH / statistics.median(timer.times[WARMUP:]),
        "train_wall_s": train_s,
        "train_cpu_s": cpu,
        "train_pairs_per_cpu_s": BATCH * STEPS / cpu,
        "reference_and_setup_s": total_s - train_s,
    }


def main():
    threads = int(os.environ.get("RLHF_BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {threads} threads, "
          f"{BATCH} pairs/step, prompt {PROMPT_LEN}, responses {RESPONSE_LEN}")
    started = time.perf_counter()
    pairs = make_pairs()
    cases = {"pytorch": bench_pytorch(pairs), "trl": bench_trl(pairs)}
    summarize_pair_cases(cases, WARMUP, 2 * (PROMPT_LEN + RESPONSE_LEN))
    report = {
        "bench": "dpo_peers",
        "device": "cpu",
        "threads": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "batch_pairs": BATCH, "prompt_len": PROMPT_LEN, "response_len": RESPONSE_LEN,
        "steps": STEPS, "warmup_steps": WARMUP,
        "cases": cases,
        "wall_time_s": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
    }
    write_report("dpo_peers", report)
    ours = read_ours("dpo")
    if ours is not None:
        for name, case in cases.items():
            if "train_pairs_per_s" in case:
                print(f"  rlhf-dpo / {name}: {ours['train_pairs_per_s'] / case['train_pairs_per_s']:.2f}x pairs/s, "
                      f"{ours['train_pairs_per_cpu_s'] / case['train_pairs_per_cpu_s']:.2f}x pairs per CPU second")


if __name__ == "__main__":
    main()
