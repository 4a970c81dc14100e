"""Proposers: who suggests the next change (mutate, search, llm, agent, command)."""
