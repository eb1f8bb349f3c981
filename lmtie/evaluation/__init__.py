"""Evaluation and generation: streamed windowed perplexity, word/byte-level metrics, sampling with a KV cache,
beam search for encoder-decoder models, corpus BLEU/chrF."""

from lmtie.evaluation.bleu import MTScore, corpus_bleu, corpus_chrf, corpus_scores
from lmtie.evaluation.config import EvalLMConfig, GenerateConfig
from lmtie.evaluation.corpus import EvalText, checkpoint_tokenizer, read_input_file, read_split, text_to_eval
from lmtie.evaluation.evaluate import evaluate
from lmtie.evaluation.generation import filter_logits, generate, prompt_to_ids
from lmtie.evaluation.metrics import ExactSum, compute_metrics, format_metrics, metrics_from_sums
from lmtie.evaluation.scoring import iter_scores, score_stream
from lmtie.evaluation.sequence_generator import SequenceGenerator
from lmtie.evaluation.windows import Window, batches, document_spans, iter_document_spans, iter_windows, make_windows

__all__ = ["EvalLMConfig", "EvalText", "ExactSum", "GenerateConfig", "MTScore", "SequenceGenerator", "Window",
           "batches", "checkpoint_tokenizer", "compute_metrics", "corpus_bleu", "corpus_chrf", "corpus_scores",
           "document_spans", "evaluate", "filter_logits", "format_metrics", "generate", "iter_document_spans",
           "iter_scores", "iter_windows", "make_windows", "metrics_from_sums", "prompt_to_ids", "read_input_file",
           "read_split", "score_stream", "text_to_eval"]
