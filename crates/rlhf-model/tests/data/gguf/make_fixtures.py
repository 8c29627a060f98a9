"""Writes the GGUF fixture of crates/rlhf-model/tests/gguf.rs (run by hand; committed output).

quants.gguf: one small tensor of every ggml type the importer reads, each block random bytes with
  finite f16 scales, next to `<name>.expected`: the same tensor dequantized to F32 by gguf-py
  (`gguf.quants.dequantize`, the code transformers loads GGUF files with).
Needs: numpy, gguf (0.19).  python make_fixtures.py
"""

import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

HERE = os.path.dirname(os.path.abspath(__file__))
RNG = np.random.default_rng(20261201)

# Byte offsets of the f16 scale fields in each block (f32 for Q8_K), so random bytes stay finite.
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def random_blocks(qtype, rows, cols):
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    blocks = RNG.integers(0, 256, size=(rows * cols // block_elems, block_bytes), dtype=np.uint8)
    for at in SCALE_FIELDS.get(qtype, []):
        scales = RNG.uniform(-0.05, 0.05, size=blocks.shape[0]).astype(np.float16)
        blocks[:, at:at + 2] = scales.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


def write_quants():
    writer = gguf.GGUFWriter(os.path.join(HERE, "quants.gguf"), "quants-fixture")
    rows, cols = 2, 256
    values = RNG.standard_normal((rows, cols)).astype(np.float32)
    writer.add_tensor("f32", values)
    writer.add_tensor("f32.expected", values)
    writer.add_tensor("f16", values.astype(np.float16))
    writer.add_tensor("f16.expected", values.astype(np.float16).astype(np.float32))
    bf16 = gguf.quants.quantize(values, T.BF16)
    writer.add_tensor("bf16", bf16, raw_dtype=T.BF16)
    writer.add_tensor("bf16.expected", gguf.quants.dequantize(bf16, T.BF16))
    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        raw = random_blocks(qtype, rows, cols)
        name = qtype.name.lower()
        writer.add_tensor(name, raw, raw_dtype=qtype)
        writer.add_tensor(f"{name}.expected", gguf.quants.dequantize(raw, qtype).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    write_quants()
