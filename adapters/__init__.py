"""Platform adapters: each turns one platform's traffic into bots.events and carries actions back."""
