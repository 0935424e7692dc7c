"""LLM clients behind the core's LLMClient port: OpenAI-compatible, local, canned; and the breaker."""
