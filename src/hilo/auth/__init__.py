"""Authentication: users, roles, API tokens, passwords."""
