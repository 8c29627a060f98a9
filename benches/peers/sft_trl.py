#!/usr/bin/env python3
"""Peer of `cargo bench -p rlhf-sft --bench sft`: the same SFT training steps in PyTorch.

Same model (the Llama sizes of configs/base.toml, vocabulary 1024, tied embeddings, random
weights), same batch (configs/sft.toml: batch_size, threads, AdamW, clipping), same synthetic
demonstrations (32 random prompt tokens + 64 random response tokens, loss on the response only),
on the CPU with the same thread count, through

  1. a plain PyTorch loop (transformers' LlamaForCausalLM, torch.optim.AdamW, clip_grad_norm_), and
  2. TRL's SFTTrainer (pre-tokenized prompt/completion rows, completion_only_loss), if trl imports.

Prints tokens/s for each and, when target/bench/sft.json exists, the ratio to rlhf-sft.

    pip install trl   # optional; the plain loop needs only torch + transformers
    python3 benches/peers/sft_trl.py [--steps 30] [--out target/bench/sft_peers.json]
"""

import argparse
import json
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
VOCAB, PROMPT_TOKENS, RESPONSE_TOKENS, WARMUP_STEPS = 1024, 32, 64, 3


def load_configs():
    base = tomllib.loads((ROOT / "configs/base.toml").read_text())
    sft = tomllib.loads((ROOT / "configs/sft.toml").read_text())
    return base["model"], sft["train"]


def build_model(sizes):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=sizes["hidden_size"],
        intermediate_size=sizes["intermediate_size"],
        num_hidden_layers=sizes["num_layers"],
        num_attention_heads=sizes["num_heads"],
        num_key_value_heads=sizes["num_kv_heads"],
        max_position_embeddings=sizes["max_position_embeddings"],
        tie_word_embeddings=sizes["tie_word_embeddings"],
        rms_norm_eps=1e-6,
        eos_token_id=0,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def synthetic_rows(n):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (n, PROMPT_TOKENS + RESPONSE_TOKENS), generator=g)
    mask = torch.cat([torch.zeros(n, PROMPT_TOKENS, dtype=torch.long), torch.ones(n, RESPONSE_TOKENS, dtype=torch.long)], 1)
    return ids, mask


def plain_loop(sizes, train, steps):
    model = build_model(sizes)
    model.train()
    adamw = train["adamw"]
    opt = torch.optim.AdamW(model.parameters(), lr=train["lr"], betas=(adamw["beta1"], adamw["beta2"]),
                            eps=adamw["eps"], weight_decay=adamw["weight_decay"])
    b = train["batch_size"]
    ids, mask = synthetic_rows(b * 64)
    times = []
    for step in range(WARMUP_STEPS + steps):
        start = time.perf_counter()
        rows = slice((step * b) % len(ids), (step * b) % len(ids) + b)
        input_ids = ids[rows]
        labels = input_ids.masked_fill(mask[rows] == 0, -100)
        loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train["max_grad_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sum(times[WARMUP_STEPS:]) / steps


def trl_trainer(sizes, train, steps):
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t2"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="t0", pad_token="t1", unk_token="t2")
    b = train["batch_size"]
    ids, mask = synthetic_rows(b * (WARMUP_STEPS + steps))
    dataset = Dataset.from_dict({"input_ids": ids.tolist(), "completion_mask": mask.tolist()})

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.ends:
                self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    adamw = train["adamw"]
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=b,
            gradient_accumulation_steps=train["grad_accum"],
            max_steps=WARMUP_STEPS + steps,
            learning_rate=train["lr"],
            warmup_steps=train["warmup_steps"],
            lr_scheduler_type="cosine",
            adam_beta1=adamw["beta1"],
            adam_beta2=adamw["beta2"],
            adam_epsilon=adamw["eps"],
            weight_decay=adamw["weight_decay"],
            max_grad_norm=train["max_grad_norm"],
            completion_only_loss=True,
            max_length=None,
            packing=False,
            use_cpu=True,
            bf16=False,
            fp16=False,
            save_strategy="no",
            logging_steps=10_000,
            report_to=[],
            dataloader_num_workers=0,
            seed=0,
            disable_tqdm=True,
        )
        timer = StepTimes()
        trainer = SFTTrainer(model=build_model(sizes), args=args, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=[timer])
        trainer.train()
    step_times = [b - a for a, b in zip(timer.ends, timer.ends[1:])]
    return sum(step_times[WARMUP_STEPS:]) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "target/bench/sft_peers.json")
    cli = parser.parse_args()
    sizes, train = load_configs()
    torch.set_num_threads(train["threads"])
    step_tokens = train["batch_size"] * (PROMPT_TOKENS + RESPONSE_TOKENS)
    report = {
        "bench": "sft training steps, PyTorch peers",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": train["batch_size"],
        "prompt_tokens": PROMPT_TOKENS,
        "response_tokens": RESPONSE_TOKENS,
        "steps": cli.steps,
    }
    step_s = plain_loop(sizes, train, cli.steps)
    report["pytorch_loop"] = {"step_ms": step_s * 1e3, "tokens_per_s": step_tokens / step_s}
    try:
        import trl

        step_s = trl_trainer(sizes, train, cli.steps)
        report["trl_sft_trainer"] = {"trl": trl.__version__, "step_ms": step_s * 1e3, "tokens_per_s": step_tokens / step_s}
    except ImportError as err:
        report["trl_sft_trainer"] = {"skipped": f"trl is not installed ({err})"}
    ours = ROOT / "target/bench/sft.json"
    if ours.exists():
        rust = json.loads(ours.read_text())["tokens_per_s"]
        report["rlhf_sft_tokens_per_s"] = rust
        for peer in ("pytorch_loop", "trl_sft_trainer"):
            if "tokens_per_s" in report[peer]:
                report[peer]["rlhf_sft_speedup"] = rust / report[peer]["tokens_per_s"]
    cli.out.parent.mkdir(parents=True, exist_ok=True)
    cli.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {cli.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
