#!/usr/bin/env python3
"""Peer benchmark: transformers `generate()` on the workload of `crates/rlhf-model/benches/generate.rs`.

Same ~10M-parameter Llama config (random weights, float32, CPU), prompt 16 tokens, 128 new tokens,
sampling (temperature 1, top-k 50, top-p 0.9, no eos), batch 1 and 32, with and without the KV cache,
same thread count (RLHF_BENCH_THREADS, else torch's default). Writes
`$RLHF_BENCH_DIR/generate_transformers.json` (default `<workspace>/target/bench/`) and, when
`generate.json` from the Rust bench is there, prints the rlhf-model / transformers throughput ratios.

    python3 benches/peers/generate_transformers.py [--cases 1:cache,32:cache,...]
"""

import argparse
import json
import os
import resource
import time

import torch
import transformers
from peer_common import bench_model
from transformers import LlamaForCausalLM

PROMPT_LEN = 16
NEW_TOKENS = 128
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="1:cache,1:nocache,32:cache,32:nocache")
    args = ap.parse_args()
    if os.environ.get("RLHF_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["RLHF_BENCH_THREADS"]))
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    cfg = bench_model("llama-8k", bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: {params / 1e6:.1f}M parameters, "
          f"{threads} threads")
    started = time.perf_counter()
    cases = []
    for spec in args.cases.split(","):
        b, mode = spec.split(":")
        batch, use_cache = int(b), mode == "cache"
        prompt = torch.randint(3, 8192, (batch, PROMPT_LEN))
        mask = torch.ones_like(prompt)
        kw = dict(attention_mask=mask, do_sample=True, temperature=1.0, top_k=50, top_p=0.9, pad_token_id=0,
                  eos_token_id=None, use_cache=use_cache)
        with torch.inference_mode():
            model.generate(prompt, max_new_tokens=8, min_new_tokens=8, **kw)
            runs = 3 if use_cache else 1
            times, cpus = [], []
            for _ in range(runs):
                t0, c0 = time.perf_counter(), time.process_time()
                out = model.generate(prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, **kw)
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                assert out.shape == (batch, PROMPT_LEN + NEW_TOKENS), out.shape
        best = min(times)
        tps = batch * NEW_TOKENS / best
        print(f"  batch {batch:>2} cache {str(use_cache):<5}: {tps:>9.1f} tokens/s ({best:.3f} s best of {runs}, "
              f"{min(cpus):.3f} s CPU)")
        cases.append(dict(batch=batch, use_cache=use_cache, new_tokens=NEW_TOKENS, tokens_per_s=tps, best_s=best,
                          mean_s=sum(times) / runs, cpu_s=min(cpus), tokens_per_cpu_s=batch * NEW_TOKENS / min(cpus),
                          runs=runs))
    report = dict(bench="generate", engine=f"transformers {transformers.__version__} (torch {torch.__version__})",
                  device="cpu", threads=threads, parameters=params, prompt_len=PROMPT_LEN, new_tokens=NEW_TOKENS,
                  sampling=dict(do_sample=True, temperature=1.0, top_k=50, top_p=0.9), cases=cases,
                  wall_time_s=time.perf_counter() - started,
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out_dir = os.environ.get("RLHF_BENCH_DIR", os.path.join(ROOT, "target", "bench"))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "generate_transformers.json"), "w") as f:
        json.dump(report, f, indent=2)
    ours_path = os.path.join(out_dir, "generate.json")
    if os.path.exists(ours_path):
        ours_report = json.load(open(ours_path))
        if ours_report.get("threads") != threads:
            print(f"  note: generate.json was measured with {ours_report.get('threads')} threads, this with {threads}")
        ours = {(c["batch"], c["use_cache"]): c for c in ours_report["cases"]}
        for c in cases:
            key = (c["batch"], c["use_cache"])
            if key in ours:
                o = ours[key]
                cpu = (f", per CPU second {o['tokens_per_cpu_s'] / c['tokens_per_cpu_s']:.2f}x"
                       if "tokens_per_cpu_s" in o else "")
                print(f"  ratio rlhf-model / transformers, batch {key[0]:>2} cache {str(key[1]):<5}: "
                      f"{o['tokens_per_s'] / c['tokens_per_s']:.2f}x{cpu}")


if __name__ == "__main__":
    main()
