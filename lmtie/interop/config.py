"""Typed config of ``lmtie-export``; its flags derive from these fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from lmtie.config import field
from lmtie.errors import UserError


@dataclass
class ExportConfig:
    """Writing a checkpoint out in another library's format."""

    path: Optional[str] = field(None, "checkpoint to export (checkpoint_best.safetensors; a .pt name is accepted)")
    format: Literal["hf"] = field("hf", "hf: a Hugging Face save_pretrained directory (GPT2LMHeadModel, "
                                        "LlamaForCausalLM or Qwen3ForCausalLM, with tokenizer.json)")
    out: Optional[str] = field(None, "directory to write (created; must be empty unless --overwrite)")
    overwrite: bool = field(False, "replace a non-empty --out directory (the old one stays until the new one is "
                                   "complete)")

    def validate(self) -> None:
        if not self.path:
            raise UserError("--path is required: the checkpoint to export")
        if not self.out:
            raise UserError("--out is required: the directory to write")
