"""Evaluation and generation: windowed perplexity, word/byte-level metrics, sampling with a KV cache."""

from lmtie.evaluation.config import EvalLMConfig, GenerateConfig
from lmtie.evaluation.corpus import EvalText, checkpoint_tokenizer, read_input_file, read_split, text_to_eval
from lmtie.evaluation.evaluate import evaluate
from lmtie.evaluation.generation import filter_logits, generate, prompt_to_ids
from lmtie.evaluation.metrics import compute_metrics, format_metrics
from lmtie.evaluation.scoring import score_stream
from lmtie.evaluation.windows import Window, batches, document_spans, make_windows

__all__ = ["EvalLMConfig", "EvalText", "GenerateConfig", "Window", "batches", "checkpoint_tokenizer",
           "compute_metrics", "document_spans", "evaluate", "filter_logits", "format_metrics", "generate",
           "make_windows", "prompt_to_ids", "read_input_file", "read_split", "score_stream", "text_to_eval"]
