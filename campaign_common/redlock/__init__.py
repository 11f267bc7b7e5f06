"""Redlock over N independent Redis masters: the client, its scripts and its transport.

`client` owns the lock algorithm, `scripts` the key names and Lua scripts on the masters,
`channel` the connection to each master.
"""
