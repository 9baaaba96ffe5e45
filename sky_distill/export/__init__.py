"""Sharing results: the SFT data as a Hugging Face dataset with a card, model cards, and pushes."""
