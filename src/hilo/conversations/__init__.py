"""Conversations: one continuous thread per customer issue, whatever the channel."""
