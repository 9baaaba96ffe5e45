"""The generate stage: prompts, engines (vLLM offline, data parallel, OpenAI-compatible API), shards, the resumable trace store, merge."""
