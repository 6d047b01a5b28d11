"""Pull scraping, Parca-style: Go `net/http/pprof` endpoints fetched on an interval and stored.

`config` reads Prometheus-shaped `scrape_configs`; `fetch` is one capped, same-host HTTP GET;
`delta` turns cumulative-since-start profiles into per-interval ones (pure); `runner` schedules a
thread per target, stores through `Storage`, and records each target's health in `scrape_targets`.
"""
