"""The floor of the house: the database and its dialects, the one commit point, refusals and
their envelope, time, money, phone numbers, signing, short caches and the API's plumbing.

Nothing here imports the rest of `server` but `extensions` and `config`.
"""
