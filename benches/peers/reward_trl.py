#!/usr/bin/env python3
"""Peer benchmark: reward-model training on the workload of `crates/rlhf-reward/benches/reward.rs`, in
PyTorch and TRL.

Same model (the embedded task's default base model as `LlamaForSequenceClassification`: hidden 192,
4 layers, 4 heads, vocab 1024, tied embeddings, one label; random weights, float32, CPU), 224 random
comparisons whose chosen and rejected rows are 64 tokens (prompt 16 + response 48, ending with eos),
micro-batches of 16 comparisons, Bradley-Terry loss, AdamW (lr 1e-4, no weight decay), gradient
clipping at 1.0, 14 steps of which the first 2 are warm-up, same thread count (RLHF_BENCH_THREADS,
default 2):

* `pytorch`: a plain loop - one forward over the 32 rows (chosen then rejected), -logsigmoid(r_c - r_r),
  backward, clip, step;
* `trl`: TRL's `RewardTrainer` on the pre-tokenized ids (`chosen_ids`/`rejected_ids`; a word-level
  tokenizer supplies the pad token).

Writes `$RLHF_BENCH_DIR/reward_peers.json` (default `<workspace>/target/bench/`) and, when `reward.json`
from the Rust bench is there, prints the rlhf-reward / peer throughput ratios.

    pip install trl        # the TRL case is skipped (with a note) when it is missing
    python3 benches/peers/reward_trl.py
"""

import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers
from peer_common import peak_rss_mb, read_ours, summarize_pair_cases, word_level_tokenizer, write_report
from transformers import LlamaConfig, LlamaForSequenceClassification

BATCH, STEPS, WARMUP = 16, 14, 2
PAIRS = BATCH * STEPS
PROMPT_LEN, RESPONSE_LEN = 16, 48
EOS, PAD, VOCAB = 0, 1, 1024
LR = 1e-4


def make_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=192, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=EOS, pad_token_id=PAD, num_labels=1)
    return LlamaForSequenceClassification(cfg)


def make_pairs():
    g = torch.Generator().manual_seed(0)
    ids = lambda n: torch.randint(2, VOCAB, (n,), generator=g).tolist()
    pairs = []
    for _ in range(PAIRS):
        prompt = ids(PROMPT_LEN)
        pairs.append((prompt + ids(RESPONSE_LEN - 1) + [EOS], prompt + ids(RESPONSE_LEN - 1) + [EOS]))
    return pairs


def bench_pytorch(pairs):
    model = make_model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    times = []
    c0 = time.process_time()
    for step in range(STEPS):
        batch = pairs[step * BATCH:(step + 1) * BATCH]
        t = time.perf_counter()
        ids = torch.tensor([c for c, _ in batch] + [r for _, r in batch])
        rewards = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, 0]
        chosen, rejected = rewards.chunk(2)
        loss = -F.logsigmoid(chosen - rejected).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    return {
        "train_pairs_per_s": BATCH / statistics.median(times[WARMUP:]),
        "train_wall_s": sum(times),
        "train_cpu_s": time.process_time() - c0,
    }


def bench_trl(pairs):
    try:
        import trl
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import RewardConfig, RewardTrainer
    except ImportError as e:
        return {"skipped": f"TRL not installed ({e}); pip install trl"}
    data = Dataset.from_dict({"chosen_ids": [c for c, _ in pairs], "rejected_ids": [r for _, r in pairs]})

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.started = [], None

        def on_step_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.started)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = RewardConfig(output_dir=out, per_device_train_batch_size=BATCH, max_steps=STEPS, learning_rate=LR,
                            weight_decay=0.0, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
                            max_length=None, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
                            dataloader_num_workers=0, seed=0, bf16=False, fp16=False)
        trainer = RewardTrainer(model=make_model(), args=args, train_dataset=data,
                                processing_class=word_level_tokenizer(VOCAB, EOS, PAD), callbacks=[timer])
        c0, t0 = time.process_time(), time.perf_counter()
        trainer.train()
        total_s, cpu = time.perf_counter() - t0, time.process_time() - c0
    train_s = sum(timer.times)
    return {
        "trl_version": trl.__version__,
        "train_pairs_per_s": BATCH / statistics.median(timer.times[WARMUP:]),
        "train_wall_s": train_s,
        "train_cpu_s": cpu,
        "setup_s": total_s - train_s,
    }


def main():
    threads = int(os.environ.get("RLHF_BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {threads} threads, "
          f"{BATCH} pairs/step, rows of {PROMPT_LEN + RESPONSE_LEN} tokens")
    started = time.perf_counter()
    pairs = make_pairs()
    cases = {"pytorch": bench_pytorch(pairs), "trl": bench_trl(pairs)}
    summarize_pair_cases(cases, WARMUP, 2 * (PROMPT_LEN + RESPONSE_LEN))
    report = {
        "bench": "reward_peers",
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
    write_report("reward_peers", report)
    ours = read_ours("reward")
    if ours is not None:
        for name, case in cases.items():
            if "train_pairs_per_s" in case:
                print(f"  rlhf-reward / {name}: {ours['pairs_per_s'] / case['train_pairs_per_s']:.2f}x pairs/s")


if __name__ == "__main__":
    main()
