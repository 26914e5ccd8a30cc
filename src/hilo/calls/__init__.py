"""Calls: phone calls in the conversation, from the voice channel or logged by agents."""
