#!/usr/bin/env python3
"""Peer benchmark on a GPU: the workload of `tests/benches/gpu.rs` in transformers and plain PyTorch.

The same model configs (`benches/models/gpt2-124m.json`, `smollm2-135m.json`; random weights), the
same shapes and random ids, on `cuda`:

* training (SFT cross-entropy on the response, reward-model Bradley-Terry, DPO sigmoid against
  precomputed reference log-probs): a plain loop over the transformers model in fp32 under
  `torch.autocast(bfloat16)` (PyTorch's AMP: bf16 compute, fp32 master weights), fused AdamW,
  clipping at 1.0; 12 steps, the median step after 2 warm-up ones;
* sampling: `model.generate` in bf16 (temperature 1, top-k 50, top-p 0.9, KV cache, exactly 128 new
  tokens) at batch 1, 32 and 256, best of 2 after a warm-up.

Writes `$RLHF_BENCH_DIR/gpu_peer.json` and, when the Rust bench's `gpu.json` is there, prints the
rlhf-rs / peer ratios. MFU as in the Rust bench (6 FLOPs per matmul parameter per token plus
12·layers·hidden·sequence), against RLHF_BENCH_PEAK_TFLOPS (default 989).

    python3 benches/peers/gpu_transformers.py
"""

import copy
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
import transformers
from peer_common import read_ours, write_report
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

MODELS = ["gpt2-124m", "smollm2-135m"]
STEPS, WARMUP = 12, 2
PAD, EOS = 0, 2
SFT = dict(batch=32, prompt=256, response=768)
REWARD = dict(pairs=32, row=512)
DPO = dict(pairs=16, prompt=256, response=256)
GENERATION_BATCHES, PROMPT, NEW_TOKENS = [1, 32, 256], 64, 128
BETA, LR = 0.1, 1e-5
PEAK = float(os.environ.get("RLHF_BENCH_PEAK_TFLOPS", "989")) * 1e12
MODELS_DIR = os.environ.get("RLHF_BENCH_MODELS",
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
DEVICE = "cuda"


def config(name):
    with open(os.path.join(MODELS_DIR, f"{name}.json")) as f:
        raw = json.load(f)
    cfg = AutoConfig.for_model(**raw)
    cfg.pad_token_id = PAD
    return raw, cfg


def flops_per_token(model, raw, sequence, tied_head):
    lookup = ("wte", "wpe", "embed_tokens")
    weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and not any(t in n for t in lookup))
    layers = raw.get("n_layer", raw.get("num_hidden_layers"))
    hidden = raw.get("n_embd", raw.get("hidden_size"))
    head = raw["vocab_size"] * hidden if tied_head and raw.get("tie_word_embeddings", True) else 0
    return 6 * (weights + head) + 12 * layers * hidden * sequence


def ids(gen, *shape, vocab):
    return torch.randint(3, vocab, shape, generator=gen).to(DEVICE)


def timed_steps(step):
    """Runs `step` STEPS times; the median seconds of a step after the warm-up ones."""
    times = []
    for i in range(STEPS):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(i)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[WARMUP:])


def train(model, loss_fn):
    optim = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0, fused=True)

    def step(i):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(i)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)

    return timed_steps(step)


def response_logps(model, rows, prompt_len):
    logits = model(input_ids=rows).logits[:, prompt_len - 1:-1].float()
    return torch.gather(logits.log_softmax(-1), 2, rows[:, prompt_len:, None]).squeeze(-1).sum(-1)


def bench_sft(raw, cfg, gen):
    b, p, r = SFT["batch"], SFT["prompt"], SFT["response"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(DEVICE)
    flops = flops_per_token(model, raw, p + r, tied_head=True)
    batches = [ids(gen, b, p + r, vocab=raw["vocab_size"]) for _ in range(STEPS)]

    def loss(i):
        labels = batches[i].clone()
        labels[:, :p] = -100
        return model(input_ids=batches[i], labels=labels).loss

    seconds = train(model, loss)
    tps = b * (p + r) / seconds
    return dict(batch=b, sequence=p + r, tokens_per_s=tps, flops_per_token=flops, mfu=tps * flops / PEAK)


def bench_reward(raw, cfg, gen):
    n, row = REWARD["pairs"], REWARD["row"]
    torch.manual_seed(0)
    cfg = copy.deepcopy(cfg)
    cfg.num_labels = 1
    model = AutoModelForSequenceClassification.from_config(cfg, attn_implementation="sdpa").to(DEVICE)
    flops = flops_per_token(model, raw, row, tied_head=False)
    batches = [ids(gen, 2 * n, row, vocab=raw["vocab_size"]) for _ in range(STEPS)]

    def loss(i):
        scores = model(input_ids=batches[i]).logits.float().squeeze(-1)
        return -F.logsigmoid(scores[:n] - scores[n:]).mean()

    seconds = train(model, loss)
    tps = 2 * n * row / seconds
    return dict(pairs=n, sequence=row, tokens_per_s=tps, flops_per_token=flops, mfu=tps * flops / PEAK)


def bench_dpo(raw, cfg, gen):
    n, p, r = DPO["pairs"], DPO["prompt"], DPO["response"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(DEVICE)
    flops = flops_per_token(model, raw, p + r, tied_head=True)
    batches = [ids(gen, 2 * n, p + r, vocab=raw["vocab_size"]) for _ in range(STEPS)]
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        reference = [response_logps(model, rows, p) for rows in batches]
        torch.cuda.synchronize()
        reference_pairs_per_s = n * STEPS / (time.perf_counter() - t0)

    def loss(i):
        logps = response_logps(model, batches[i], p) - reference[i]
        return -F.logsigmoid(BETA * (logps[:n] - logps[n:])).mean()

    seconds = train(model, loss)
    tps = 2 * n * (p + r) / seconds
    return dict(pairs=n, sequence=p + r, tokens_per_s=tps, flops_per_token=flops, mfu=tps * flops / PEAK,
                reference_pairs_per_s=reference_pairs_per_s)


def bench_generate(raw, cfg, gen):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(DEVICE, torch.bfloat16).eval()
    cases = []
    for batch in GENERATION_BATCHES:
        prompt = ids(gen, batch, PROMPT, vocab=raw["vocab_size"])
        kwargs = dict(attention_mask=torch.ones_like(prompt), do_sample=True, temperature=1.0, top_k=50, top_p=0.9,
                      pad_token_id=PAD, eos_token_id=None)
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=8, min_new_tokens=8, **kwargs)
            best = float("inf")
            for _ in range(2):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = model.generate(prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, **kwargs)
                torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
        assert out.shape == (batch, PROMPT + NEW_TOKENS), out.shape
        cases.append(dict(batch=batch, new_tokens=NEW_TOKENS, tokens_per_s=batch * NEW_TOKENS / best, best_s=best))
        print(f"  generate batch {batch:>3}: {cases[-1]['tokens_per_s']:>10.0f} tokens/s")
    return cases


def main():
    started = time.perf_counter()
    models = {}
    for name in MODELS:
        raw, cfg = config(name)
        gen = torch.Generator().manual_seed(0)
        print(f"gpu peer: {name}, transformers {transformers.__version__}, torch {torch.__version__}")
        report = {}
        for stage, fn in [("sft", bench_sft), ("reward", bench_reward), ("dpo", bench_dpo)]:
            report[stage] = fn(raw, cfg, gen)
            print(f"  {stage:<6}: {report[stage]['tokens_per_s']:>9.0f} tokens/s, MFU {100 * report[stage]['mfu']:.1f}%")
            torch.cuda.empty_cache()
        report["generate"] = bench_generate(raw, cfg, gen)
        report["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        models[name] = report
    write_report("gpu_peer", dict(bench="gpu", engine=f"transformers {transformers.__version__} + plain PyTorch loop",
                                  torch=torch.__version__, device=torch.cuda.get_device_name(),
                                  dtype="torch.autocast bf16, fp32 master weights", models=models,
                                  wall_time_s=time.perf_counter() - started))
    ours = read_ours("gpu")
    if ours is None:
        return
    print("\n| model | case | rlhf-rs tokens/s | peer tokens/s | ratio | rlhf-rs MFU | peer MFU |\n|---|---|---|---|---|---|---|")
    for name in MODELS:
        for stage in ["sft", "reward", "dpo"]:
            a, b = ours["models"][name][stage], models[name][stage]
            print(f"| {name} | {stage} | {a['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} | "
                  f"{a['tokens_per_s'] / b['tokens_per_s']:.2f} | {100 * a['mfu']:.1f}% | {100 * b['mfu']:.1f}% |")
        for a, b in zip(ours["models"][name]["generate"], models[name]["generate"]):
            print(f"| {name} | generate batch {b['batch']} | {a['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} | "
                  f"{a['tokens_per_s'] / b['tokens_per_s']:.2f} | – | – |")


if __name__ == "__main__":
    main()
