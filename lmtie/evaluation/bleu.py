"""Corpus BLEU and chrF of detokenised translations, computed by sacrebleu.

sacrebleu (Post 2018) tokenises the text itself, so its scores are comparable across papers only
when it is given plain detokenised sentences: undoing BPE/SentencePiece and any Moses
tokenisation is the caller's job. Each score comes with sacrebleu's signature
(``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``), which says how it was computed
and belongs next to the number in any report. sacrebleu is optional (``pip install lmtie[mt]``)
and imported only here, when a score is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lmtie.errors import UserError


@dataclass(frozen=True)
class MTScore:
    """One corpus-level score: ``text`` is sacrebleu's line (BLEU adds n-gram precisions, BP, lengths)."""

    name: str
    score: float
    text: str
    signature: str

    def __str__(self) -> str:
        return f"{self.text} ({self.signature})"


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
                tokenize: str = "13a", lowercase: bool = False) -> MTScore:
    """sacrebleu's corpus BLEU (0-100); ``references`` is one string per hypothesis, or several such lists."""
    return _score("BLEU", hypotheses, references, tokenize=tokenize, lowercase=lowercase)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]) -> MTScore:
    """sacrebleu's corpus chrF (character 6-grams, beta 2; 0-100)."""
    return _score("chrF", hypotheses, references)


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
                  tokenize: str = "13a", lowercase: bool = False) -> dict[str, MTScore]:
    """{"bleu": ..., "chrf": ...} of the same hypotheses and references."""
    return {"bleu": corpus_bleu(hypotheses, references, tokenize, lowercase),
            "chrf": corpus_chrf(hypotheses, references)}


def _score(metric: str, hypotheses, references, **options) -> MTScore:
    refs = _reference_streams(hypotheses, references)
    metrics = _sacrebleu().metrics
    try:
        scorer = metrics.BLEU(**options) if metric == "BLEU" else metrics.CHRF(**options)
    except KeyError as e:  # sacrebleu's answer to an unknown tokenizer name
        raise UserError(f"sacrebleu has no tokenizer {e}; try 13a, intl, char, zh, ja-mecab or none") from None
    result = scorer.corpus_score(list(hypotheses), refs)
    return MTScore(result.name, float(result.score), result.format(), str(scorer.get_signature()))


def _reference_streams(hypotheses: Sequence[str], references) -> list[list[str]]:
    """sacrebleu's layout (a list of reference lists, each parallel to the hypotheses), checked."""
    if len(hypotheses) == 0:
        raise UserError("no hypotheses to score")
    streams = [list(references)] if references and isinstance(references[0], str) else [list(r) for r in references]
    if not streams:
        raise UserError("no references to score against")
    for i, stream in enumerate(streams):
        if len(stream) != len(hypotheses):
            raise UserError(f"{len(hypotheses)} hypotheses but reference set {i + 1} has {len(stream)} lines; "
                            "they must be parallel")
    return streams


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise UserError("BLEU and chrF need sacrebleu: pip install lmtie[mt]") from None
    return sacrebleu
