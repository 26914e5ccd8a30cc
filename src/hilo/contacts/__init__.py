"""Contacts: one customer, with every identity they are known by."""
