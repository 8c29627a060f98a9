"""Checks a checkpoint saved by rlhf-rs against `transformers`: recomputes the summed log-prob of each
response (eos included, given the prompt) that `rlhf-eval logprobs` wrote, and prints the largest
difference.

    target/release/rlhf-eval logprobs --model runs/default/sft/final \
        --data runs/default/data/demonstrations_heldout.parquet --out /tmp/lp.parquet
    python3 tests/scripts/check_logprobs.py --model runs/default/sft/final --table /tmp/lp.parquet --rows 64
"""

import argparse

import pyarrow.parquet as pq
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--table", required=True, help="rlhf-eval logprobs output (prompt, response, logprob)")
    parser.add_argument("--rows", type=int, default=64)
    args = parser.parse_args()

    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{args.model}/tokenizer.json")
    eos = model.config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    table = pq.read_table(args.table).to_pylist()[: args.rows]
    worst = 0.0
    for row in table:
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        response = tokenizer(row["response"], add_special_tokens=False)["input_ids"] + [eos]
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1].double()
        logp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(response)[:, None]).sum().item()
        worst = max(worst, abs(logp - row["logprob"]))
        assert row["num_tokens"] == len(response), (row["num_tokens"], len(response))
    print(f"{len(table)} rows: max |logprob(rlhf-rs) - logprob(transformers)| = {worst:.3e}")


if __name__ == "__main__":
    main()
