"""A GPT-2-architecture base checkpoint for trying `cargo xtask pipeline --preset gpt2` without
downloading GPT-2: `transformers`' GPT2LMHeadModel with random weights, a few layers, and the tokenizer of a tiny base
model trained by rlhf-rs.

    python3 tests/scripts/gpt2_like_base.py --tokenizer-from runs/default/base/final --out /tmp/gpt2-like
    cargo xtask pipeline --preset gpt2 --base /tmp/gpt2-like --run-dir runs/gpt2-like

It checks the plumbing of a GPT-2 checkpoint through every stage, not the preset's quality.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-from", type=Path, required=True, help="a checkpoint dir with tokenizer.json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()

    source = json.loads((args.tokenizer_from / "config.json").read_text())
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=source["vocab_size"],
        n_positions=512,
        n_embd=args.width,
        n_layer=args.layers,
        n_head=max(1, args.width // 64),
        bos_token_id=source.get("bos_token_id"),
        eos_token_id=source.get("eos_token_id"),
        pad_token_id=source.get("pad_token_id"),
    )
    model = GPT2LMHeadModel(config)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        if (args.tokenizer_from / name).exists():
            shutil.copy(args.tokenizer_from / name, args.out / name)
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters())} parameters)")


if __name__ == "__main__":
    main()
