"""The workspace's memory: the SQLite database (every SQL statement), immutable label versions, the
model registry, stored predictions, the review queue, and the vocabulary (sources, kinds, statuses).

May import: `segloop.io`, `segloop.data`, `segloop.model`, `segloop.config`, `segloop.errors`.
"""
