"""transformers' own GGUF loading of SmolLM2-135M-Instruct.Q4_1: the reference of tests/gguf.rs.

    python smollm2_reference.py FILE.gguf   (torch, transformers 5, gguf, accelerate)
"""
import json, os, sys
import torch, transformers, gguf
from transformers import AutoTokenizer, AutoModelForCausalLM
torch.set_num_threads(2)
d, f = os.path.split(os.path.abspath(sys.argv[1]))  # .models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
texts = ["What is the capital of France?", "Hello world! 123 4567 naïve café 🙂", "  leading spaces\n\ttabs", "<|im_start|>user\nhi<|im_end|>"]
questions = ["What is the capital of France?", "Name three primary colors.", "What is 2 + 2?"]
out = {"source": f"transformers {transformers.__version__}, gguf {gguf.__version__ if hasattr(gguf,'__version__') else '0.19.0'}, torch {torch.__version__}, f32",
       "texts": texts, "encode": [tok(t, add_special_tokens=False)["input_ids"] for t in texts], "greedy": []}
with torch.no_grad():
    for q in questions:
        ids = list(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=False))
        x = torch.tensor([ids])
        logits = model(x).logits[0, -1]
        g = model.generate(x, max_new_tokens=40, do_sample=False)[0, len(ids):].tolist()
        out["greedy"].append({"question": q, "prompt_ids": ids, "last_logits_head": logits[:32].tolist(),
                              "new_ids": g, "text": tok.decode(g, skip_special_tokens=True)})
        print(q, "->", out["greedy"][-1]["text"])
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'smollm2-transformers.json'), 'w'), indent=1, ensure_ascii=False)
