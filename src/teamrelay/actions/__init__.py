"""The GPT Actions bridge: schema, wrapper routes, files in and out (see docs/custom-gpt.md)."""
