"""Fixtures for the training tests: tokenizers per template, tiny models per family, SFT files."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES

TRACES = FIXTURES / "sky_t1_traces_sample.jsonl"


@pytest.fixture(scope="session")
def llama3_tokenizer():
    from sky_distill.train.templates import build_llama3_byte_tokenizer

    return build_llama3_byte_tokenizer()


@pytest.fixture(scope="session")
def tokenizers(byte_tokenizer, llama3_tokenizer):
    """One tokenizer per supported chat template."""
    return {"chatml": byte_tokenizer, "llama3": llama3_tokenizer}


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, llama3_tokenizer):
    """A random 2-layer Llama with the Llama 3 style byte tokenizer, saved in Hugging Face format."""
    from sky_distill.models.tiny import TinyModelSpec, build_tiny_model

    directory = tmp_path_factory.mktemp("tiny-llama")
    spec = TinyModelSpec(architecture="llama", num_layers=2, max_position_embeddings=1024)
    llama3_tokenizer.save_pretrained(str(directory))
    build_tiny_model(spec, llama3_tokenizer, seed=0).save_pretrained(str(directory))
    return directory


def trace_conversations(limit: int | None = None) -> list[list[dict[str, str]]]:
    """Real Sky-T1 traces from the shared fixture, as user/assistant conversations."""
    if not TRACES.exists():
        pytest.skip(f"{TRACES} is not present")
    conversations = []
    with open(TRACES, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            conversations.append(
                [{"role": "user", "content": row["problem"]}, {"role": "assistant", "content": row["trace"]}]
            )
            if limit and len(conversations) == limit:
                break
    return conversations
