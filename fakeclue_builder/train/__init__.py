"""FakeVLM training (`fakeclue-builder train`): data from the export, the shared chat format, transformers' Trainer.

Modules: `data` (Parquet / FakeClue-json rows, images decoded per item), `collate` (answer-only labels), `model`
(loading, freezing, LoRA), `callbacks` (throughput logging), `trainer` (the run), `probe` (the linear-probe ablation).
Heavy libraries (torch, transformers, peft, pyarrow) are imported inside functions only.
"""
