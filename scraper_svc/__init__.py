"""scraper_svc: the consumer group on the runs stream that locks, scrapes and records each run.

Modules: `config` (settings), `server` (wiring, signals), `consumer` (stream entries <->
domain, bounded concurrency), `runner` (one run's lifecycle), `fetcher` (HTTP with caps and
the SSRF guard), `extract` (CSS selectors), `store` (all Redis access), `errors`.
"""
