from transformers import AutoTokenizer


def test_round_trip_any_text(byte_tokenizer):
    text = "Compute 12 + 5.\n<think>\n2+5+0=7\n</think> é ∑ 🙂 \\boxed{17}"
    ids = byte_tokenizer.encode(text, add_special_tokens=False)
    assert byte_tokenizer.decode(ids) == text


def test_chat_template_and_assistant_mask(byte_tokenizer):
    messages = [{"role": "user", "content": "Compute 1 + 2."}, {"role": "assistant", "content": "\\boxed{3}"}]
    rendered = byte_tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == "<|im_start|>user\nCompute 1 + 2.<|im_end|>\n<|im_start|>assistant\n\\boxed{3}<|im_end|>\n"
    encoded = byte_tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [token for token, keep in zip(encoded["input_ids"], encoded["assistant_masks"]) if keep]
    assert byte_tokenizer.decode(masked) == "\\boxed{3}<|im_end|>"


def test_saved_tokenizer_loads_with_auto_tokenizer(tmp_path, byte_tokenizer):
    byte_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.eos_token == "<|im_end|>"
    assert loaded.encode("<think>x</think>") == byte_tokenizer.encode("<think>x</think>")
    assert loaded.chat_template == byte_tokenizer.chat_template
