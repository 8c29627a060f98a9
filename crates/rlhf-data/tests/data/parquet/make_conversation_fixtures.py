"""Writes the conversational Parquet fixtures that `tests/import.rs` and the workspace test
`tests/tests/conversational_data.rs` read, with pandas' defaults (pyarrow engine, snappy): nested
Python lists of `{"role", "content"}` dicts become `list<struct<role, content>>` columns, as in
the Hub's chat datasets.

- `pandas_messages.parquet`: SFT rows in the `messages` layout, one of them multi-turn with a system turn.
- `pandas_preferences.parquet`: the UltraFeedback-binarized layout: `prompt` (a string), `chosen` and
  `rejected` (conversations ending with the assistant's turn, the prompt repeated in them).

Run from this directory: `python make_conversation_fixtures.py` (needs pandas and pyarrow from PyPI)."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def turn(role, content):
    return {"role": role, "content": content}


MESSAGES = [
    [turn("system", "You are terse."), turn("user", "Largest planet?"), turn("assistant", "Jupiter.")],
    [turn("user", "Hi"), turn("assistant", "Hello! How can I help?"), turn("user", "Name a colour."),
     turn("assistant", "Blue.")],
    [turn("user", "Say hello in Spanish."), turn("assistant", "Hola.")],
    [turn("user", "What is the capital of France?"), turn("assistant", "The capital of France is Paris.")],
]
QUESTIONS = ["Name a fruit.", "What is 2 + 2?", "Describe the sea.", "Say something kind."]
GOOD = ["An apple is a fruit.", "2 + 2 is 4.", "The sea is wide and blue.", "You are doing great!"]
BAD = ["no", "five", "idk", "whatever"]

pd.DataFrame({"messages": MESSAGES}).to_parquet("pandas_messages.parquet")
pd.DataFrame({
    "prompt": QUESTIONS,
    "chosen": [[turn("user", q), turn("assistant", a)] for q, a in zip(QUESTIONS, GOOD)],
    "rejected": [[turn("user", q), turn("assistant", a)] for q, a in zip(QUESTIONS, BAD)],
}).to_parquet("pandas_preferences.parquet")

for name in ["pandas_messages", "pandas_preferences"]:
    file = pq.ParquetFile(f"{name}.parquet")
    print(name, file.metadata.created_by, file.metadata.row_group(0).column(0).compression, file.schema_arrow)
print("pyarrow", pa.__version__, "pandas", pd.__version__)
