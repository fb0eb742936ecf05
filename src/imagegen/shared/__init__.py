"""State shared by every imagegen process and replica, on Redis (``IMAGEGEN_REDIS_URL``).

Redis holds three things: each provider account's create rate (``rate.py``: one token bucket
per account, taken atomically by a Lua script on Redis' own clock), each API key's requests per
minute (``keyrate.py``: a sliding minute, likewise) and job events (``events.py``: pub/sub, so an
event stream on one replica follows a job another runs). Jobs, leases and images
stay in the database and the image store; Redis holds nothing that cannot be lost.

The ``redis`` package is the ``imagegen[redis]`` extra, imported only when Redis is configured.
"""
