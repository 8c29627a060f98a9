#!/usr/bin/env python3
"""Peer benchmark: the work of `crates/rlhf-model/benches/smollm2.rs` in transformers and PyTorch.

The same checkpoint (the Rust bench's import of SmolLM2-135M-Instruct, `$RLHF_BENCH_DIR/smollm2/`, f32,
CPU, same thread count): transformers `generate` at batch 1 and 16 (the chat prompt of one question,
64 new tokens, temperature 1, top-k 50, top-p 0.9, no early stop, KV cache), and one SFT step of a
plain PyTorch loop (8 rows of 48 prompt + 48 response random tokens, mean NLL of the response tokens,
backward, torch.optim.AdamW lr 1e-5). Writes `$RLHF_BENCH_DIR/smollm2_transformers.json` and prints the
rlhf-rs / peer ratios when `smollm2.json` is there.

    cargo xtask bench smollm2 && python3 benches/peers/smollm2_transformers.py
"""

import json
import os
import time

import torch
import transformers
from peer_common import bench_dir, peak_rss_mb
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW_TOKENS = 64
ROWS, HALF, STEPS = 8, 48, 3


def main():
    if os.environ.get("RLHF_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["RLHF_BENCH_THREADS"]))
    threads = torch.get_num_threads()
    model_dir = os.path.join(bench_dir(), "smollm2")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt = list(tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                          add_generation_prompt=True, tokenize=True, return_dict=False))
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {threads} threads, "
          f"prompt {len(prompt)} tokens")
    generation = []
    for batch in [1, 16]:
        ids = torch.tensor([prompt] * batch)
        kw = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=50, top_p=0.9,
                  pad_token_id=tok.pad_token_id, eos_token_id=None)
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)
            t0, c0 = time.perf_counter(), time.process_time()
            out = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, **kw)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert out.shape == (batch, len(prompt) + NEW_TOKENS), out.shape
        tps = batch * NEW_TOKENS / wall
        print(f"  generate batch {batch:>2}: {tps:>8.1f} tokens/s ({wall:.2f} s, {cpu:.2f} s CPU)")
        generation.append(dict(batch=batch, new_tokens=NEW_TOKENS, tokens_per_s=tps, wall_s=wall, cpu_s=cpu))

    torch.manual_seed(0)
    ids = torch.randint(3, 49152, (ROWS, 2 * HALF))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for step in range(STEPS + 1):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        logits = model(ids).logits[:, HALF - 1:-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, HALF:].reshape(-1))
        loss.backward()
        optimizer.step()
        if step > 0:
            times.append(time.perf_counter() - t0)
    best = min(times)
    tokens = ROWS * 2 * HALF
    print(f"  SFT step {ROWS} x {2 * HALF} tokens: {tokens / best:.1f} tokens/s ({best:.2f} s best of {STEPS})")
    report = dict(bench="smollm2", engine=f"transformers {transformers.__version__} (torch {torch.__version__})",
                  device="cpu", threads=threads, prompt_tokens=len(prompt), generation=generation,
                  sft_step=dict(rows=ROWS, tokens_per_row=2 * HALF, tokens_per_s=tokens / best, best_s=best,
                                steps=times),
                  peak_rss_mb=peak_rss_mb())
    with open(os.path.join(bench_dir(), "smollm2_transformers.json"), "w") as f:
        json.dump(report, f, indent=2)
    ours_path = os.path.join(bench_dir(), "smollm2.json")
    if os.path.exists(ours_path):
        ours = json.load(open(ours_path))
        for o, p in zip(ours["generation"], generation):
            print(f"  ratio rlhf-rs / transformers generate, batch {p['batch']:>2}: "
                  f"{o['tokens_per_s'] / p['tokens_per_s']:.2f}x")
        print(f"  ratio rlhf-rs / plain PyTorch, SFT step: "
              f"{ours['sft_step']['tokens_per_s'] / report['sft_step']['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
